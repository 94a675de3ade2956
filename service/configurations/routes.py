"""``GET /v1/configurations/{id}`` and its tailored ONNX model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from service.auth.deps import CurrentPrincipal
from service.configurations import service
from service.configurations.schemas import ConfigurationRead
from service.deps import BlobsDep, SessionDep
from service.errors import ErrorResponse
from service.supernets.service import open_blob
from service.verifications import service as verifications

router = APIRouter(prefix="/v1/configurations", tags=["configurations"])
ConfigId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
}


@router.get("/{config_id}", response_model=ConfigurationRead, responses=_ERRORS)
def get_configuration(
    config_id: ConfigId, session: SessionDep, principal: CurrentPrincipal
) -> ConfigurationRead:
    """A configuration, its predicted metrics and every verification of it on a device."""
    principal.require("agent")
    row = service.get_configuration(session, config_id)
    return service.read(row, verifications.of_configuration(session, row.id))


@router.get(
    "/{config_id}/model.onnx",
    response_class=StreamingResponse,
    responses={
        **_ERRORS,
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
    },
)
def download_model(
    config_id: ConfigId, session: SessionDep, blobs: BlobsDep, principal: CurrentPrincipal
) -> StreamingResponse:
    """The self-contained tailored ONNX model (assembled once, then served from storage)."""
    principal.require("agent")
    sha = service.model_blob(session, blobs, config_id)
    chunks, size = open_blob(blobs, sha, f"model of configuration {config_id}")
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": 'attachment; filename="model.onnx"',
            "ETag": f'"{sha}"',
        },
    )
