"""MESS benchmarks: each module prints a table (and, with ``--json``, one JSON line).

Run them from the repository root as modules, e.g. ``python -m bench.headline --preset small``.
Not installed with the package; the figures of record are in ``bench/RESULTS.md``.
"""
