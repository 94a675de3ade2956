"""Configurations and their tailored ONNX models, assembled on first download (no torch)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.orm import Session

from service.blobs import BlobStore
from service.configurations import repository
from service.configurations.models import Configuration
from service.configurations.schemas import ConfigurationRead
from service.errors import NotFound, Unprocessable
from service.supernets.service import get_supernet
from service.verifications.schemas import Verified


def config_id(supernet_id: str, configuration: dict[str, Any]) -> str:
    body = {"supernet": supernet_id, "configuration": configuration}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def get_or_create(
    session: Session, supernet_id: str, configuration: dict[str, Any], metrics: dict[str, Any]
) -> Configuration:
    """The stored configuration; created (with these metrics) on its first answer, never
    rewritten afterwards.

    The insert comes first (``ON CONFLICT DO NOTHING``): on SQLite a transaction that read
    before writing cannot write once another writer has committed in between.
    """
    cid = config_id(supernet_id, configuration)
    return repository.get_or_create(
        session,
        {"id": cid, "supernet_id": supernet_id, "configuration": configuration, "metrics": metrics},
    )


def get_configuration(session: Session, cid: str) -> Configuration:
    row = repository.get(session, cid)
    if row is None:
        raise NotFound(f"no configuration {cid}")
    return row


def read(row: Configuration, verified: list[Verified] | None = None) -> ConfigurationRead:
    return ConfigurationRead(
        id=row.id,
        supernet_id=row.supernet_id,
        configuration=row.configuration,
        metrics=row.metrics,
        created_at=row.created_at,
        verifications=verified or [],
    )


def model_blob(session: Session, blobs: BlobStore, cid: str) -> str:
    """sha256 of the tailored ONNX model, assembled and stored on first request."""
    # onnx takes most of a second to import: only processes serving models pay for it
    from mess.onnx import AssemblyError, LazyParts, PartsIndex, assemble_model

    row = get_configuration(session, cid)
    if row.model_sha256 and blobs.exists(row.model_sha256):
        return row.model_sha256
    supernet = get_supernet(session, row.supernet_id, with_parts=True)
    shas = {p.name: p.sha256 for p in supernet.parts}

    def loader(sha: str) -> Any:
        return lambda: b"".join(blobs.iter_chunks(sha))

    parts = LazyParts({name: loader(sha) for name, sha in shas.items()})
    metadata = {
        "mess.supernet": str(supernet.digest),
        "mess.supernet_id": supernet.id,
        "mess.configuration_id": row.id,
        "mess.predicted_miou": str(row.metrics.get("miou")),
        "mess.predicted_cost": str(row.metrics.get("expected_cost")),
        "mess.cost_unit": str(row.metrics.get("unit")),
    }
    try:
        model = assemble_model(
            parts,
            PartsIndex.from_manifest(supernet.manifest),
            row.configuration,
            metadata=metadata,
        )
    except (AssemblyError, KeyError) as exc:
        raise Unprocessable(f"cannot assemble configuration {cid}: {exc}") from None
    sha, _ = blobs.put_bytes(model.SerializeToString())
    row.model_sha256 = sha
    session.flush()
    return sha
