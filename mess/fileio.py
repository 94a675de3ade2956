"""Writing files so that a crash never leaves a truncated one, and hashing them.

Every file the library, the service and the agent write for someone else to read (stats,
costs, bundles, fronts, checkpoints, cached parts) goes through :func:`atomic_write`: a reader
sees the old file or the whole new one, never half of it, also after a power loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    The folder is fsynced after the rename so the new name survives a crash. On an exception
    the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write; its folder must exist.
        mode: ``"wb"`` or ``"w"`` (text; pass ``encoding=...``).
        **open_kwargs: passed to :func:`open` (``encoding``, ``newline``).

    Example:
        >>> with atomic_write("costs.json", "w", encoding="utf-8") as fh:  # doctest: +SKIP
        ...     fh.write("{}")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_write`."""
    with atomic_write(path) as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` with :func:`atomic_write`."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest (64 lowercase hex digits) of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
