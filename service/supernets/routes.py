"""``/v1/supernets``: upload bundles, list and describe supernets, download parts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.auth.deps import CurrentPrincipal, EngineerPrincipal
from service.auth.service import Principal
from service.blobs import BlobStore
from service.deps import BlobsDep, HooksDep, SessionDep, SettingsDep
from service.errors import ErrorResponse
from service.hooks import Hooks
from service.settings import Settings
from service.supernets import repository, service
from service.supernets.models import Supernet
from service.supernets.schemas import SupernetList, SupernetRead
from service.uploads import receive_file

SupernetId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the bundle file")
]
router = APIRouter(
    prefix="/v1/supernets",
    tags=["supernets"],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["bundle"],
                    "properties": {
                        "bundle": {
                            "type": "string",
                            "format": "binary",
                            "description": "a mess-bundle v1 file (NAME.mess, from mess export)",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=SupernetRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_DOC,
    responses={
        200: {"model": SupernetRead, "description": "the same bundle was already stored"},
        400: {"model": ErrorResponse, "description": "not a valid mess-bundle"},
        413: {"model": ErrorResponse, "description": "larger than MESS_MAX_UPLOAD_MB"},
    },
)
async def upload_supernet(
    request: Request,
    response: Response,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    hooks: HooksDep,
    principal: EngineerPrincipal,
) -> SupernetRead:
    """Upload a bundle (multipart field ``bundle``), streamed to disk and validated in full
    before anything is stored. Re-uploading the same bundle returns it with 200."""
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=scratch, prefix="upload-", suffix=".mess")
    upload = FilePath(name)
    os.close(fd)
    try:
        await receive_file(request, "bundle", upload)
        row, created = await run_in_threadpool(
            _store, session, blobs, settings, hooks, upload, principal
        )
    finally:
        upload.unlink(missing_ok=True)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    full = await run_in_threadpool(service.get_supernet, session, row.id, with_parts=True)
    return service.detail(full)


def _store(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    hooks: Hooks,
    upload: FilePath,
    principal: Principal,
) -> tuple[Supernet, bool]:
    row, created = service.store_bundle(session, blobs, settings, upload, principal)
    if created:
        hooks.supernet_stored(session, row.id)
    return row, created


@router.get("", response_model=SupernetList)
def list_supernets(
    session: SessionDep,
    _who: CurrentPrincipal,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> SupernetList:
    """Stored supernets, newest first (optionally those with one name)."""
    rows = repository.list_supernets(session, limit, offset, name)
    return SupernetList(items=[service.summary(r) for r in rows])


@router.get(
    "/{supernet_id}", response_model=SupernetRead, responses={404: {"model": ErrorResponse}}
)
def get_supernet(
    supernet_id: SupernetId, session: SessionDep, _who: CurrentPrincipal
) -> SupernetRead:
    """A supernet's manifest summary: classes, input size, positions, exits, parts."""
    return service.detail(service.get_supernet(session, supernet_id, with_parts=True))


@router.get(
    "/{supernet_id}/bundle",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the bundle file",
        },
        404: {"model": ErrorResponse},
    },
)
def download_bundle(
    supernet_id: SupernetId, session: SessionDep, blobs: BlobsDep, _who: CurrentPrincipal
) -> StreamingResponse:
    """The bundle file as uploaded."""
    row = service.get_supernet(session, supernet_id)
    chunks, size = service.open_blob(blobs, row.id, f"supernet {row.id[:12]}")
    filename = f"{row.name}.mess".encode("ascii", "replace").decode().replace('"', "_")
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)


@router.get(
    "/{supernet_id}/parts/{name:path}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "the ONNX model",
        },
        404: {"model": ErrorResponse},
    },
)
def download_part(
    supernet_id: SupernetId,
    name: Annotated[str, Path(max_length=400, examples=["head/layer3.2/crm1-b2-rdi1-dlv3"])],
    session: SessionDep,
    blobs: BlobsDep,
    _who: CurrentPrincipal,
) -> StreamingResponse:
    """One ONNX part by name, e.g. ``segment/layer1.0`` or ``head/final``."""
    part = service.part_blob(session, supernet_id, name)
    chunks, size = service.open_blob(blobs, part.sha256, f"part {name}")
    filename = name.replace("/", "__") + ".onnx"
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Content-SHA256": part.sha256,
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
