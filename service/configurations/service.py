"""Configurations and their tailored ONNX models, assembled on first download (no torch)."""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.blobs import BlobStore
from service.configurations import repository
from service.configurations.models import Configuration
from service.configurations.schemas import ConfigurationRead
from service.errors import NotFound, ServiceUnavailable, Unprocessable
from service.supernets.service import get_supernet

_WRITE_ATTEMPTS = 8


def config_id(supernet_id: str, configuration: dict[str, Any]) -> str:
    body = {"supernet": supernet_id, "configuration": configuration}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def get_or_create(
    session: Session, supernet_id: str, configuration: dict[str, Any], metrics: dict[str, Any]
) -> Configuration:
    """The stored configuration; created (with these metrics) on its first answer.

    The insert runs in a transaction of its own, started after the caller's reads end: on
    SQLite a read snapshot cannot be upgraded to a write once another writer has committed,
    so a few short retries absorb concurrent first answers.
    """
    cid = config_id(supernet_id, configuration)
    row = repository.get(session, cid)
    if row is not None:
        return row  # an existing row is not rewritten: queries stay read-only
    session.commit()
    for attempt in range(_WRITE_ATTEMPTS):
        try:
            row = repository.add(
                session,
                Configuration(
                    id=cid, supernet_id=supernet_id, configuration=configuration, metrics=metrics
                ),
            )
            session.commit()
            return row
        except IntegrityError:  # created concurrently: use that one
            session.rollback()
            row = repository.get(session, cid)
            if row is not None:
                return row
        except OperationalError:  # SQLite busy: another writer just committed
            session.rollback()
            time.sleep(0.01 * (attempt + 1) * (1 + random.random()))
    raise ServiceUnavailable("the database is busy; retry the request")


def get_configuration(session: Session, cid: str) -> Configuration:
    row = repository.get(session, cid)
    if row is None:
        raise NotFound(f"no configuration {cid}")
    return row


def read(row: Configuration) -> ConfigurationRead:
    return ConfigurationRead(
        id=row.id,
        supernet_id=row.supernet_id,
        configuration=row.configuration,
        metrics=row.metrics,
        created_at=row.created_at,
    )


def model_blob(session: Session, blobs: BlobStore, cid: str) -> str:
    """sha256 of the tailored ONNX model, assembled and stored on first request."""
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
    session.commit()
    return sha
