"""The ``mess`` command line.

Each command lives in the module named after it (a command group such as ``mess train``
in one module for the group) as a thin typer shell around one plain function; importing the
module registers the command on :data:`app`. Commands import torch inside their bodies so
that torch-free commands (search, query, push) start without it.
"""

from __future__ import annotations

# isort: off
# Imported in the order ``mess --help`` lists the commands: the order they register in.
from mess.cli import costs as _costs  # noqa: F401  (registers commands)
from mess.cli import calibrate as _calibrate  # noqa: F401
from mess.cli import convert as _convert  # noqa: F401
from mess.cli import inspect as _inspect  # noqa: F401
from mess.cli import demo as _demo  # noqa: F401
from mess.cli import export as _export  # noqa: F401
from mess.cli import assemble as _assemble  # noqa: F401
from mess.cli import query as _query  # noqa: F401
from mess.cli import run as _run  # noqa: F401
from mess.cli import search as _search  # noqa: F401
from mess.cli import merge as _merge  # noqa: F401
from mess.cli import serve as _serve  # noqa: F401
from mess.cli import worker as _worker  # noqa: F401
from mess.cli import push as _push  # noqa: F401
from mess.cli import synth as _synth  # noqa: F401
from mess.cli import token as _token  # noqa: F401
from mess.cli import train as _train  # noqa: F401

# isort: on
from mess.cli._app import app, main

__all__ = ["app", "main"]
