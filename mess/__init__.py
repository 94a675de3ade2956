"""MESS: Multi-Exit Semantic Segmentation networks.

The top-level package is the torch-free core (search space, exit statistics, cost tables,
search, ONNX assembly). The torch side lives in :mod:`mess.nn` and :mod:`mess.data`.
"""

__version__ = "0.1.0"
