"""Content-addressed blob storage: local folder (embedded default) or S3-compatible.

A blob's key is the sha256 of its bytes, sharded as ``ab/cd/<sha>``; writing the same
content twice is a no-op. Writes are atomic: the local store writes a temporary file,
fsyncs it and renames it into place; S3 puts are atomic by nature.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from mess.fileio import fsync_dir, sha256_file
from service.settings import Settings

CHUNK = 1 << 20
_SHA = re.compile(r"^[0-9a-f]{64}$")


class BlobNotFound(KeyError):
    """No blob with that digest."""


def blob_key(sha256: str) -> str:
    """Relative key of a blob: ``ab/cd/abcd...``.

    Args:
        sha256: the digest (64 lowercase hex digits).

    Returns:
        The sharded key.

    Raises:
        ValueError: when ``sha256`` is not a digest (keeps keys from becoming paths).
    """
    if not _SHA.match(sha256):
        raise ValueError(f"not a sha256 digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class BlobStore(Protocol):
    """What the service needs from a blob store."""

    def put_file(self, path: str | Path, sha256: str | None = None) -> tuple[str, bool]:
        """Store a file; return ``(sha256, created)`` (``created`` False if it existed)."""
        ...

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store bytes; return ``(sha256, created)``."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        ...

    def size(self, sha256: str) -> int:
        """Size in bytes (raises :class:`BlobNotFound`)."""
        ...

    def iter_chunks(self, sha256: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream the blob's bytes (raises :class:`BlobNotFound` before the first chunk)."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the blob if present."""
        ...

    def check(self) -> None:
        """Raise if the store is unreachable (health check)."""
        ...


class LocalBlobStore:
    """Blobs under ``root/ab/cd/<sha>``.

    Args:
        root: the folder (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists)."""
        return self.root / blob_key(sha256)

    def put_file(self, path: str | Path, sha256: str | None = None) -> tuple[str, bool]:
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            if sha256 is not None and sha != sha256:
                raise ValueError(f"content of {path} does not match sha256 {sha256}")
            return self._commit(Path(tmp), sha)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(Path(tmp), hashlib.sha256(data).hexdigest())
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _commit(self, tmp: Path, sha: str) -> tuple[str, bool]:
        dest = self.path(sha)
        if dest.exists():
            return sha, False
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)  # atomic: readers see all of the blob or none of it
        fsync_dir(dest.parent)
        return sha, True

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def open(self, sha256: str) -> IO[bytes]:
        """Open the blob for reading."""
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def iter_chunks(self, sha256: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        fh = self.open(sha256)

        def chunks() -> Iterator[bytes]:
            with fh:
                while chunk := fh.read(chunk_size):
                    yield chunk

        return chunks()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"blob folder {self.root} is not writable")


class S3BlobStore:
    """Blobs in an S3-compatible bucket under ``prefix + ab/cd/<sha>``.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket (must exist).
        prefix: key prefix, e.g. ``"mess/"``.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, sha256: str) -> str:
        return self.prefix + blob_key(sha256)

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put_file(self, path: str | Path, sha256: str | None = None) -> tuple[str, bool]:
        sha = sha256_file(path)
        if sha256 is not None and sha != sha256:
            raise ValueError(f"content of {path} does not match sha256 {sha256}")
        if self.exists(sha):
            return sha, False
        self.client.upload_file(str(path), self.bucket, self._key(sha))
        return sha, True

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        sha = hashlib.sha256(data).hexdigest()
        if self.exists(sha):
            return sha, False
        self.client.put_object(Bucket=self.bucket, Key=self._key(sha), Body=data)
        return sha, True

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def size(self, sha256: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except Exception as exc:
            if self._missing(exc):
                raise BlobNotFound(sha256) from None
            raise
        return int(head["ContentLength"])

    def iter_chunks(self, sha256: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256))
        except Exception as exc:
            if self._missing(exc):
                raise BlobNotFound(sha256) from None
            raise
        body = obj["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()

        return chunks()

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings ask for.

    Args:
        settings: service settings (``blob_backend`` and the ``s3_*`` fields).

    Returns:
        A :class:`LocalBlobStore` under ``data_dir/blobs`` or an :class:`S3BlobStore`.

    Raises:
        ValueError: when S3 is selected without a bucket.
    """
    if settings.blob_backend == "local":
        return LocalBlobStore(settings.data_dir / "blobs")
    if not settings.s3_bucket:
        raise ValueError("MESS_BLOB_BACKEND=s3 needs MESS_S3_BUCKET")
    import boto3

    secret = settings.s3_secret_access_key
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )
    return S3BlobStore(client, settings.s3_bucket, settings.s3_prefix)


def copy_to(store: BlobStore, sha256: str, dest: str | Path) -> Path:
    """Write a blob to a local file (for consumers that need a path).

    Args:
        store: the blob store.
        sha256: the blob.
        dest: the file to write.

    Returns:
        ``dest`` as a path.
    """
    dest = Path(dest)
    with open(dest, "wb") as out:
        for chunk in store.iter_chunks(sha256):
            out.write(chunk)
    return dest


__all__ = [
    "BlobNotFound",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_key",
    "copy_to",
    "make_blob_store",
]
