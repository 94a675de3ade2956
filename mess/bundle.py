"""The ``mess-bundle`` v1 format (torch-free): a zip holding a supernet's deployable parts.

Layout of ``NAME.mess``::

    manifest.json      the manifest (:class:`Manifest`)
    parts/<file>.onnx  one ONNX graph per part (segments, heads, policies, ...)
    stats.npz          the ``mess-stats`` v1 exit statistics
    costs.json         a ``mess-costs`` v1 table (GFLOPs from the export)
    supernet.pt        optional: the supernet weights (``weights`` in the manifest)
    samples.npz        optional: a few calibration images (``samples``; :func:`load_samples`)

A bundle comes from untrusted hands (``mess push``), so :func:`read_bundle` checks every
member before anything is used: names (no absolute paths, ``..``, symlinks or members the
manifest does not list), sizes and compression ratios (zip bombs), the manifest schema,
sha256 digests, a full ``onnx.checker`` pass on every part, and the stats and costs files
through :mod:`mess.stats` and :mod:`mess.costs`. Each failure is one :class:`BundleError`
with a clear message. :func:`write_bundle` writes a deterministic archive (sorted members,
fixed timestamps), so re-exporting the same content gives the same bundle digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mess.fileio import atomic_write, sha256_file
from mess.space import FINAL
from mess.stats import IGNORE_INDEX

FORMAT = "mess-bundle"
VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_SHA256 = r"^[0-9a-f]{64}$"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same content, same bundle digest
_MEMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]*(/[A-Za-z0-9][A-Za-z0-9._@+=-]*)*$")

_PART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]*(/[A-Za-z0-9][A-Za-z0-9._@+=-]*)+$")
PartKind = Literal["segment", "head", "final_head", "upsample", "policy"]
# which kinds a part name's first component allows
_KIND_PREFIX: dict[str, tuple[str, ...]] = {
    "segment": ("segment",),
    "head": ("head", "final_head"),
    "upsample": ("upsample",),
    "policy": ("policy",),
}


class BundleError(ValueError):
    """A bundle that is malformed, unsafe or inconsistent (one clear message)."""


# The part layout, shared by the exporter, the validator, the assembler and the cost table.
def segment_part(position: str) -> str:
    """Backbone from the previous position (or the input) to ``position`` (or ``final``)."""
    return f"segment/{position}"


def head_part(exit_id: str) -> str:
    """An exit's head (``final``: the original model's head)."""
    return f"head/{exit_id}"


def upsample_part(position: str) -> str:
    """Head-resolution logits of any exit at ``position`` -> full-resolution logits."""
    return f"upsample/{position}"


def policy_part(position: str) -> str:
    """Head-resolution logits of any exit at ``position`` -> image scores per pixel threshold."""
    return f"policy/{position}"


@dataclass(frozen=True)
class BundleLimits:
    """Bounds that keep a hostile archive from exhausting memory or disk.

    Attributes:
        max_members: most zip members.
        max_member_bytes: largest uncompressed member.
        max_part_bytes: largest ONNX part (a protobuf message cannot exceed 2 GiB; only
            ``supernet.pt`` may be larger).
        max_total_bytes: largest uncompressed total.
        max_ratio: largest uncompressed/compressed ratio of a member above ``ratio_floor``.
        ratio_floor: members smaller than this (uncompressed) skip the ratio check.
        max_manifest_bytes: largest ``manifest.json``.
    """

    max_members: int = 10_000
    max_member_bytes: int = 16 << 30
    max_part_bytes: int = 2 << 30
    max_total_bytes: int = 16 << 30
    max_ratio: float = 200.0
    ratio_floor: int = 1 << 20
    max_manifest_bytes: int = 16 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRef(_Strict):
    """A member of the archive and the sha256 of its bytes."""

    path: str = Field(examples=["stats.npz"])
    sha256: str = Field(pattern=_SHA256)


class PartRef(FileRef):
    """One ONNX part; ``inputs``/``input_shapes`` describe its feeds (from the export)."""

    kind: PartKind
    inputs: list[str] | None = None
    input_shapes: list[list[int]] | None = None


class Position(_Strict):
    """A candidate exit point: module path, channels and output stride."""

    name: str = Field(min_length=1, max_length=200)
    channels: int = Field(gt=0)
    stride: int = Field(gt=0)


class Exit(_Strict):
    """A candidate early exit ``<position>/<head>``."""

    id: str = Field(min_length=1, max_length=300)
    position: str
    position_index: int = Field(ge=0)
    head: str = Field(min_length=1, max_length=100)


class Normalization(_Strict):
    """Per-channel RGB mean and std applied inside the graphs."""

    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)

    @model_validator(mode="after")
    def _positive_std(self) -> Normalization:
        if min(self.std) <= 0:
            raise ValueError("normalization std must be positive")
        return self


class Manifest(_Strict):
    """``manifest.json`` of a ``mess-bundle`` v1; only ``source`` is free-form."""

    format: Literal["mess-bundle"]
    version: Literal[1]
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    supernet: str = Field(pattern=_SHA256, description="sha256 of the supernet weights")
    source: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=1, le=65535)
    class_names: list[str] = Field(default_factory=list)
    ignore_index: int = IGNORE_INDEX
    normalization: Normalization
    input_size: tuple[int, int]
    positions: list[Position] = Field(min_length=1)
    exits: list[Exit]
    parts: dict[str, PartRef]
    stats: FileRef
    costs: FileRef
    weights: FileRef | None = None
    samples: FileRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if min(self.input_size) <= 0:
            raise ValueError("input_size must be two positive integers [H, W]")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class_names for num_classes={self.num_classes}"
            )
        names = [p.name for p in self.positions]
        if len(set(names)) != len(names):
            raise ValueError("position names are not unique")
        if FINAL in names:
            raise ValueError("'final' is reserved and cannot name a position")
        index = {n: i for i, n in enumerate(names)}
        seen: set[str] = set()
        for ex in self.exits:
            if ex.id in seen:
                raise ValueError(f"exit {ex.id!r} listed twice")
            seen.add(ex.id)
            if ex.position not in index:
                raise ValueError(f"exit {ex.id!r}: unknown position {ex.position!r}")
            if index[ex.position] != ex.position_index:
                raise ValueError(
                    f"exit {ex.id!r}: position_index {ex.position_index} but "
                    f"{ex.position!r} is position {index[ex.position]}"
                )
            if ex.id != f"{ex.position}/{ex.head}":
                raise ValueError(f"exit id {ex.id!r} is not '<position>/<head>'")
        for name, part in self.parts.items():
            if len(name) > 400 or not _PART_NAME.match(name):
                raise ValueError(f"part name {name!r} is not a plain '/'-separated name")
            prefix = name.split("/", 1)[0]
            if part.kind not in _KIND_PREFIX.get(prefix, ()):
                raise ValueError(f"part {name!r}: kind {part.kind!r} does not fit its name")
            if not part.path.startswith("parts/") or not part.path.endswith(".onnx"):
                raise ValueError(f"part {name!r}: path must be parts/<file>.onnx")
        exit_positions = sorted({ex.position for ex in self.exits}, key=index.__getitem__)
        required = [segment_part(n) for n in [*names, FINAL]] + [head_part(FINAL)]
        required += [head_part(ex.id) for ex in self.exits]
        required += [f(p) for p in exit_positions for f in (upsample_part, policy_part)]
        missing = [r for r in required if r not in self.parts]
        if missing:
            raise ValueError(f"parts missing from the manifest: {', '.join(missing[:5])}")
        if self.parts[head_part(FINAL)].kind != "final_head":
            raise ValueError("part 'head/final' must have kind 'final_head'")
        members = [MANIFEST, *self.members()]
        if len(set(members)) != len(members):
            raise ValueError("two manifest entries point at the same archive member")
        for member in members:
            _check_member_name(member)
        return self

    def members(self) -> list[str]:
        """Archive paths the manifest references (everything but ``manifest.json``)."""
        paths = [p.path for p in self.parts.values()] + [self.stats.path, self.costs.path]
        if self.weights is not None:
            paths.append(self.weights.path)
        if self.samples is not None:
            paths.append(self.samples.path)
        return paths

    def digests(self) -> dict[str, str]:
        """``{archive path: sha256}`` of every referenced member."""
        refs: list[FileRef] = [*self.parts.values(), self.stats, self.costs]
        if self.weights is not None:
            refs.append(self.weights)
        if self.samples is not None:
            refs.append(self.samples)
        return {r.path: r.sha256 for r in refs}


@dataclass
class Bundle:
    """A validated bundle, its members extracted under ``workdir``.

    Attributes:
        manifest: the validated manifest.
        sha256: digest of the bundle file (its id in the service).
        size: size of the bundle file in bytes.
        files: ``{archive path: extracted file}`` for every referenced member.
        costs: the parsed ``costs.json`` (a ``mess-costs`` v1 table).
    """

    manifest: Manifest
    sha256: str
    size: int
    files: dict[str, Path] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)


def _check_member_name(name: str) -> None:
    if "\\" in name or "\x00" in name:
        raise ValueError(f"archive member {name!r}: backslashes and NUL are not allowed")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"archive member {name!r}: absolute paths are not allowed")
    if ".." in path.parts:
        raise ValueError(f"archive member {name!r}: '..' is not allowed")
    if not _MEMBER.match(name):
        raise ValueError(f"archive member {name!r}: not a plain relative file path")


def _check_entries(zf: zipfile.ZipFile, limits: BundleLimits) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise BundleError(f"bundle has {len(infos)} members, more than {limits.max_members}")
    entries: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if not name:  # ZipInfo.is_dir() would fail on it
            raise BundleError("unsafe bundle: a member has an empty name")
        try:
            _check_member_name(name.rstrip("/") if info.is_dir() else name)
        except ValueError as exc:
            raise BundleError(f"unsafe bundle: {exc}") from None
        if info.is_dir():
            raise BundleError(f"unsafe bundle: directory entry {name!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BundleError(f"unsafe bundle: {name!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise BundleError(f"bundle member {name!r} is encrypted")
        if name in entries:
            raise BundleError(f"bundle member {name!r} appears twice")
        if info.file_size > limits.max_member_bytes:
            raise BundleError(
                f"bundle member {name!r} is {info.file_size} bytes uncompressed, "
                f"more than {limits.max_member_bytes}"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor and ratio > limits.max_ratio:
            raise BundleError(
                f"bundle member {name!r} compresses {ratio:.0f}x, more than "
                f"{limits.max_ratio:.0f}x (zip bomb?)"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise BundleError(f"bundle is more than {limits.max_total_bytes} bytes uncompressed")
        entries[name] = info
    return entries


# what reading a damaged member raises: zipfile lets zlib's errors and unknown compression
# methods through as they are
_CORRUPT = (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError)


def _read_manifest(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Manifest:
    if info.file_size > limit:
        raise BundleError(f"manifest.json is larger than {limit} bytes")
    try:
        data = zf.read(info)
    except _CORRUPT as exc:
        raise BundleError(f"bundle member {info.filename!r} is corrupt: {exc}") from None
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also: too deep, integers of 4300+ digits
        raise BundleError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError("manifest.json must hold a JSON object")
    if raw.get("format") != FORMAT:
        raise BundleError(f"not a mess bundle: format is {raw.get('format')!r}, not {FORMAT!r}")
    if raw.get("version") != VERSION:
        raise BundleError(f"unsupported mess-bundle version {raw.get('version')!r}")
    return parse_manifest(raw)


def parse_manifest(raw: Mapping[str, Any]) -> Manifest:
    """Validate a manifest dict.

    Args:
        raw: the decoded ``manifest.json``.

    Returns:
        The manifest model.

    Raises:
        BundleError: with the first schema problem.
    """
    try:
        return Manifest.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise BundleError(
            f"invalid manifest: {where + ': ' if where else ''}{msg}"
            + (f" ({exc.error_count() - 1} more errors)" if exc.error_count() > 1 else "")
        ) from None


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    try:
        with zf.open(info) as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except _CORRUPT as exc:
        raise BundleError(f"bundle member {info.filename!r} is corrupt: {exc}") from None
    if digest.hexdigest() != sha256:
        raise BundleError(f"sha256 mismatch for {info.filename!r}: the manifest says {sha256[:12]}")


def _check_onnx(name: str, path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises several types (ValidationError, DecodeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"part {name!r} is not a valid ONNX model: {first}") from None


def check_costs_cover(costs: Mapping[str, Any], manifest: Manifest) -> None:
    """Check that a ``mess-costs`` table prices every part of the manifest's supernet.

    Args:
        costs: the table (already validated by :mod:`mess.costs`).
        manifest: the supernet's manifest.

    Raises:
        ValueError: naming the first missing entry.
    """
    exits = [ex.id for ex in manifest.exits]
    wanted = {
        "segments": [p.name for p in manifest.positions] + [FINAL],
        "heads": [*exits, FINAL],
        "policy": exits,
    }
    for section, keys in wanted.items():
        table = costs.get(section) or {}
        missing = [k for k in keys if k not in table]
        if missing:
            raise ValueError(
                f"costs {section} miss {len(missing)} of the supernet's entries, e.g. "
                f"{missing[0]!r}"
            )


def _check_stats(path: Path, manifest: Manifest) -> int:
    from mess.stats import StatsError, load_stats

    try:
        stats = load_stats(path)
    except StatsError as exc:
        raise BundleError(f"stats: {exc}") from None
    meta = stats.meta
    if meta.get("num_classes") != manifest.num_classes:
        raise BundleError(
            f"stats are for {meta.get('num_classes')} classes, the manifest for "
            f"{manifest.num_classes}"
        )
    stats_exits = [e.get("id") for e in meta.get("exits", [])]
    manifest_exits = [e.id for e in manifest.exits]
    if stats_exits != manifest_exits:
        extra = sorted(set(stats_exits) ^ set(manifest_exits))
        raise BundleError(
            "stats exits differ from the manifest exits"
            + (f" (e.g. {extra[0]!r})" if extra else " (order)")
        )
    if meta.get("supernet") not in (None, manifest.supernet):
        raise BundleError("stats were computed for another supernet (digest mismatch)")
    return int(stats.intersection.shape[0])


SAMPLES_MAX_IMAGES = 256
SAMPLES_MAX_BYTES = 64 << 20


def samples_bytes(images: Any, indices: Any) -> bytes:
    """``samples.npz`` of ``images`` (float32 ``[N, 3, H, W]``) and their stats ``indices``,
    byte for byte the same for the same arrays (fixed zip timestamps)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in (
            ("images", np.ascontiguousarray(images, dtype=np.float32)),
            ("indices", np.ascontiguousarray(indices, dtype=np.int64)),
        ):
            member = io.BytesIO()
            np.save(member, array, allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", _ZIP_TIME), member.getvalue())
    return buf.getvalue()


def load_samples(
    source: str | Path | bytes, input_size: tuple[int, int], num_samples: int | None = None
) -> tuple[Any, Any]:
    """The sample images of a bundle (``samples.npz``), checked.

    ``images``: float32 ``[N, 3, H, W]`` RGB in [0, 1] at the bundle's input size, exactly as
    calibration saw them (the exit decisions compare scores with thresholds in float32, so
    rounding the images could move a decision); ``indices``: int64 ``[N]``, each image's
    sample index in the stats, distinct. At most ``SAMPLES_MAX_IMAGES`` images and
    ``SAMPLES_MAX_BYTES``.

    Returns:
        ``(images, indices)`` as numpy arrays.

    Raises:
        ValueError: anything else.
    """
    import io

    import numpy as np

    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(raw) > SAMPLES_MAX_BYTES:
        raise ValueError(f"{len(raw)} bytes, more than {SAMPLES_MAX_BYTES}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            names = sorted(data.files) if hasattr(data, "files") else []
            if names == ["images", "indices"]:
                images, indices = data["images"], data["indices"]
    except (OSError, EOFError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not an npz file of plain arrays: {exc}") from None
    if names != ["images", "indices"]:
        raise ValueError(f"arrays {names}, not images and indices")
    h, w = input_size
    n = images.shape[0] if images.ndim == 4 else -1
    if images.dtype != np.float32 or images.shape[1:] != (3, h, w) or n < 1:
        raise ValueError(
            f"images must be float32 [N, 3, {h}, {w}], not {images.dtype} {images.shape}"
        )
    if n > SAMPLES_MAX_IMAGES:
        raise ValueError(f"{n} images, more than {SAMPLES_MAX_IMAGES}")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("images must lie in [0, 1]")
    if indices.dtype != np.int64 or indices.shape != (n,):
        raise ValueError(f"indices must be int64 [{n}], not {indices.dtype} {indices.shape}")
    if len(set(indices.tolist())) != n or indices.min() < 0:
        raise ValueError("indices must be distinct and non-negative")
    if num_samples is not None and indices.max() >= num_samples:
        raise ValueError(f"index {int(indices.max())} past the stats' {num_samples} samples")
    return images, indices


def _check_costs(path: Path, manifest: Manifest) -> dict[str, Any]:
    from mess.costs import CostsError, parse_costs

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # also: too deep, integers of 4300+ digits
        raise BundleError(f"costs.json is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError("costs.json must hold a JSON object")
    try:
        parse_costs(raw)
        check_costs_cover(raw, manifest)
    except (CostsError, ValueError) as exc:
        raise BundleError(f"costs: {exc}") from None
    return raw


def read_bundle(
    path: str | Path,
    workdir: str | Path,
    *,
    limits: BundleLimits | None = None,
    check_onnx: bool = True,
) -> Bundle:
    """Validate a bundle completely and extract its members under ``workdir``.

    Args:
        path: the ``.mess`` file.
        workdir: an existing, empty folder that receives the extracted members.
        limits: size bounds (:class:`BundleLimits` defaults).
        check_onnx: run ``onnx.checker.check_model(full_check=True)`` on every part.

    Returns:
        The :class:`Bundle`.

    Raises:
        BundleError: on the first problem found.
    """
    limits = limits or BundleLimits()
    path, workdir = Path(path), Path(workdir)
    bundle_sha = sha256_file(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"not a zip archive: {exc}") from None
    with zf:
        entries = _check_entries(zf, limits)
        if MANIFEST not in entries:
            raise BundleError("bundle has no manifest.json")
        manifest = _read_manifest(zf, entries[MANIFEST], limits.max_manifest_bytes)
        digests = manifest.digests()
        unlisted = sorted(set(entries) - set(digests) - {MANIFEST})
        if unlisted:
            raise BundleError(f"bundle member {unlisted[0]!r} is not listed in the manifest")
        missing = sorted(set(digests) - set(entries))
        if missing:
            raise BundleError(f"bundle member {missing[0]!r} is listed but missing")
        for part in manifest.parts.values():
            if entries[part.path].file_size > limits.max_part_bytes:
                raise BundleError(
                    f"part {part.path!r} is {entries[part.path].file_size} bytes, more than "
                    f"{limits.max_part_bytes} (the most an ONNX protobuf can hold)"
                )
        files: dict[str, Path] = {}
        for i, (member, sha) in enumerate(sorted(digests.items())):
            dest = workdir / f"{i:05d}{PurePosixPath(member).suffix}"
            _extract(zf, entries[member], dest, sha)
            files[member] = dest
    if check_onnx:
        for name, part in sorted(manifest.parts.items()):
            _check_onnx(name, files[part.path])
    num_samples = _check_stats(files[manifest.stats.path], manifest)
    costs = _check_costs(files[manifest.costs.path], manifest)
    if manifest.samples is not None:
        try:
            load_samples(files[manifest.samples.path], manifest.input_size, num_samples)
        except ValueError as exc:
            raise BundleError(f"samples: {exc}") from None
    return Bundle(manifest, bundle_sha, path.stat().st_size, files, costs)


def validate_bundle(path: str | Path, *, limits: BundleLimits | None = None) -> Manifest:
    """Validate a bundle (in a scratch folder that is removed afterwards).

    Args:
        path: the ``.mess`` file.
        limits: size bounds.

    Returns:
        Its manifest.

    Raises:
        BundleError: on the first problem found.
    """
    with tempfile.TemporaryDirectory(prefix="mess-bundle-") as tmp:
        return read_bundle(path, tmp, limits=limits).manifest


def write_bundle(
    path: str | Path,
    manifest: Manifest | Mapping[str, Any],
    files: Mapping[str, bytes | str | os.PathLike[str]],
) -> str:
    """Write a bundle atomically (temporary file, fsync, rename).

    Args:
        path: the ``.mess`` file to write.
        manifest: the manifest (a dict is validated as :class:`Manifest`).
        files: ``{archive path: bytes or a file path}``: exactly the members the manifest
            references, with matching sha256 digests.

    Returns:
        The sha256 of the written bundle.

    Raises:
        BundleError: when the manifest is invalid or does not match ``files``.
    """
    model = manifest if isinstance(manifest, Manifest) else parse_manifest(manifest)
    digests = model.digests()
    if set(files) != set(digests):
        extra = sorted(set(files) ^ set(digests))
        raise BundleError(f"files and manifest disagree on member {extra[0]!r}")
    raw = manifest if not isinstance(manifest, Manifest) else manifest.model_dump(mode="json")
    text = json.dumps(raw, indent=1, sort_keys=True).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # members given as paths are copied in chunks and hashed on the way, so a bundle of
    # several GB is never whole in memory; a mismatch aborts the atomic write
    with atomic_write(path) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, content in [(MANIFEST, text), *sorted(files.items())]:
            info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            digest = hashlib.sha256()
            if isinstance(content, bytes):
                digest.update(content)
                zf.writestr(info, content)
            else:
                # the size decides zip64 as writestr would: the same bytes either way
                info.file_size = os.stat(content).st_size
                with open(content, "rb") as src, zf.open(info, "w") as dst:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
            if member != MANIFEST and digest.hexdigest() != digests[member]:
                raise BundleError(f"sha256 of {member!r} does not match the manifest")
    return sha256_file(path)
