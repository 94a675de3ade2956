"""Supernet rules: validate an uploaded bundle, store it (blobs, then one transaction),
and look supernets and their parts up.

Storage order keeps failures clean: the bundle is validated in a scratch folder first;
then every blob is written (content-addressed, so re-writing is harmless); then the rows
are added to the request's transaction. If that rolls back, the blobs this upload created
are deleted again, so a failed upload leaves neither a row nor a blob.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session

from mess.bundle import BundleError, BundleLimits, read_bundle
from mess.fileio import sha256_file
from service.auth.service import Principal
from service.blobs import BlobNotFound, BlobStore
from service.db import on_rollback
from service.errors import AppError, NotFound
from service.settings import Settings
from service.supernets import repository
from service.supernets.models import Supernet, SupernetPart
from service.supernets.schemas import PartRead, SupernetRead, SupernetSummary

log = logging.getLogger(__name__)


class InvalidBundle(AppError):
    """The uploaded file is not a valid ``mess-bundle``."""

    status_code = 400


def bundle_limits(settings: Settings) -> BundleLimits:
    """Archive limits for uploads, which bound the scratch disk an upload may fill.

    An honest bundle hardly compresses (ONNX weights, npz), so its members add up to about
    the upload's size: small uploads may expand 8x (a member) and 16x (all), large ones by
    1 GiB (a member) and to twice the upload plus 2 GiB (all), never 16x of several GB.
    """
    upload = settings.max_upload_bytes
    return BundleLimits(
        max_member_bytes=min(8 * upload, upload + (1 << 30)),
        max_total_bytes=min(16 * upload, 2 * upload + (2 << 30)),
    )


def _delete_created(blobs: BlobStore, created: list[str]) -> None:
    for sha in created:
        try:
            blobs.delete(sha)
        except Exception:  # cleanup must not hide the original error
            log.exception("could not delete blob %s after a failed upload", sha)


def store_bundle(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    path: Path,
    principal: Principal,
) -> tuple[Supernet, bool]:
    """Validate and store an uploaded bundle; idempotent by the bundle's sha256.

    Args:
        session: database session; if its unit of work rolls back, the blobs this upload
            created are deleted again.
        blobs: the blob store.
        settings: limits and scratch folder.
        path: the uploaded file.
        principal: the uploader (engineer or admin).

    Returns:
        The supernet and whether it was created (False: it was already stored).

    Raises:
        InvalidBundle: the file is not a valid bundle (nothing stored).
    """
    principal.require("engineer")
    bundle_id = sha256_file(path)
    existing = repository.get(session, bundle_id)
    if existing is not None:
        return existing, False
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="bundle-") as work:
        try:
            bundle = read_bundle(path, work, limits=bundle_limits(settings))
        except BundleError as exc:
            raise InvalidBundle(f"invalid bundle: {exc}") from None
        manifest = bundle.manifest
        created: list[str] = []
        try:
            for member, sha in manifest.digests().items():
                if blobs.put_file(bundle.files[member], sha)[1]:
                    created.append(sha)
            if blobs.put_file(path, bundle_id)[1]:
                created.append(bundle_id)
            inserted = repository.insert_missing(
                session,
                {
                    "id": bundle_id,
                    "name": manifest.name,
                    "digest": manifest.supernet,
                    "num_classes": manifest.num_classes,
                    "size": bundle.size,
                    "manifest": manifest.model_dump(mode="json"),
                    "stats_sha256": manifest.stats.sha256,
                    "costs_sha256": manifest.costs.sha256,
                    "created_by_id": principal.token_id,
                },
                [
                    SupernetPart(
                        supernet_id=bundle_id,
                        name=name,
                        kind=ref.kind,
                        sha256=ref.sha256,
                        size=bundle.files[ref.path].stat().st_size,
                    )
                    for name, ref in manifest.parts.items()
                ],
            )
        except BaseException:
            _delete_created(blobs, created)
            raise
    if not inserted:  # the same bundle, uploaded concurrently, is stored: its row keeps them
        return get_supernet(session, bundle_id), False
    on_rollback(session, lambda: _delete_created(blobs, created))
    log.info(
        "stored supernet %s (%s, %d parts)", bundle_id[:12], manifest.name, len(manifest.parts)
    )
    return get_supernet(session, bundle_id), True


def get_supernet(session: Session, supernet_id: str, *, with_parts: bool = False) -> Supernet:
    """The supernet, or :class:`NotFound`."""
    row = repository.get(session, supernet_id, with_parts=with_parts)
    if row is None:
        raise NotFound(f"supernet {supernet_id} not found")
    return row


def summary(row: Supernet) -> SupernetSummary:
    """The list entry of a supernet."""
    m = row.manifest
    return SupernetSummary(
        id=row.id,
        name=row.name,
        digest=row.digest,
        num_classes=row.num_classes,
        num_positions=len(m["positions"]),
        num_exits=len(m["exits"]),
        size=row.size,
        created_at=row.created_at,
    )


def detail(row: Supernet) -> SupernetRead:
    """The manifest summary of a supernet (parts must be loaded)."""
    m = row.manifest
    return SupernetRead(
        **summary(row).model_dump(),
        class_names=m["class_names"],
        ignore_index=m["ignore_index"],
        input_size=list(m["input_size"]),
        normalization=m["normalization"],
        source=m["source"],
        positions=m["positions"],
        exits=m["exits"],
        parts=[PartRead.model_validate(p) for p in row.parts],
        stats_sha256=row.stats_sha256,
        costs_sha256=row.costs_sha256,
    )


def open_blob(blobs: BlobStore, sha256: str, what: str) -> tuple[Iterator[bytes], int]:
    """Stream a stored blob; a blob missing from the store is reported, not a 500.

    Returns:
        The chunk iterator and the size in bytes.
    """
    try:
        return blobs.iter_chunks(sha256), blobs.size(sha256)
    except BlobNotFound:
        log.error("blob %s of %s is missing from the blob store", sha256, what)
        raise AppError(f"the stored bytes of {what} are missing", 503) from None


def part_blob(session: Session, supernet_id: str, name: str) -> SupernetPart:
    """A part of a supernet, or :class:`NotFound`."""
    get_supernet(session, supernet_id)
    part = repository.get_part(session, supernet_id, name)
    if part is None:
        raise NotFound(f"supernet {supernet_id[:12]} has no part {name!r}")
    return part
