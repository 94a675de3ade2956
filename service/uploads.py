"""Request-size limits and streaming of multipart file uploads to disk.

:class:`BodyLimitMiddleware` answers 413 as soon as a request announces, or actually sends,
more than the limit (a lying ``Content-Length`` does not help). :func:`receive_file`
streams one multipart field straight into a file, so an upload is never whole in memory.
:func:`sweep_scratch` removes, at start-up, what uploads killed mid-way left on disk.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BadRequest

log = logging.getLogger(__name__)


STALE_SCRATCH_SECONDS = 3600.0


def sweep_scratch(*folders: Path, older_than: float = STALE_SCRATCH_SECONDS) -> list[Path]:
    """Delete what killed uploads left behind in scratch folders (partial uploads, extracted
    bundles, unfinished blob writes): entries nothing has written to for ``older_than``
    seconds. A live upload keeps writing, so its files stay fresh; recent entries are kept
    because another worker process on the same data folder may be using them right now.

    Args:
        folders: scratch folders (missing ones are skipped).
        older_than: age in seconds of the newest file of an entry.

    Returns:
        The entries deleted.
    """
    cutoff = time.time() - older_than
    swept = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            try:
                files = [entry, *entry.rglob("*")] if entry.is_dir() else [entry]
                if max(f.lstat().st_mtime for f in files) >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError as exc:  # gone meanwhile, or not ours to delete
                log.warning("could not sweep scratch entry %s: %s", entry, exc)
                continue
            swept.append(entry)
    if swept:
        log.info("swept %d stale scratch entries left by interrupted uploads", len(swept))
    return swept


def _too_large(limit: int) -> str:
    return f"request body larger than the {limit // (1024 * 1024)} MB limit (MESS_MAX_UPLOAD_MB)"


class BodyLimitMiddleware:
    """Reject request bodies larger than ``max_bytes`` with a JSON 413.

    Args:
        app: the wrapped application.
        max_bytes: the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            body = json.dumps({"detail": _too_large(self.max_bytes)}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # an HTTPException passes through FastAPI's body parsing unchanged
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


async def receive_file(request: Request, field: str, dest: Path) -> dict[str, Any]:
    """Stream the multipart field ``field`` of ``request`` into ``dest``.

    Args:
        request: a ``multipart/form-data`` request.
        field: the file field's name.
        dest: the file to write.

    Returns:
        ``{"filename": ..., "size": ...}`` of the received file.

    Raises:
        BadRequest: when the body is not multipart, malformed, or lacks ``field``.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest(f"expected multipart/form-data with a file field {field!r}")
    state: dict[str, Any] = {"headers": {}, "found": False, "size": 0, "filename": None}
    header_name: list[bytes] = []
    header_value: list[bytes] = []
    out = open(dest, "wb")  # noqa: SIM115 - closed below, written from callbacks
    writing = False

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        state["headers"][b"".join(header_name).lower()] = b"".join(header_value).strip()
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal writing
        _, options = parse_options_header(state["headers"].get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        writing = name == field and not state["found"]
        if writing:
            state["found"] = True
            filename = options.get(b"filename")
            state["filename"] = filename.decode("utf-8", "replace") if filename else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if writing:
            out.write(data[start:end])
            state["size"] += end - start

    def on_part_end() -> None:
        nonlocal writing
        writing = False

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        with out:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise BadRequest("the client disconnected during the upload") from None
    if not state["found"]:
        raise BadRequest(f"multipart body has no file field {field!r}")
    return {"filename": state["filename"], "size": state["size"]}
