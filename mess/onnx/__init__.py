"""Tailored ONNX models assembled from a bundle's parts (torch-free: onnx only)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import onnx

from mess.onnx.assemble import AssemblyError, PartsIndex, assemble_model
from mess.onnx.force import FORCE_INPUT, force_paths, num_paths

__all__ = [
    "FORCE_INPUT",
    "AssemblyError",
    "LazyParts",
    "PartsIndex",
    "assemble",
    "assemble_model",
    "force_paths",
    "num_paths",
]


class LazyParts(Mapping[str, onnx.ModelProto]):
    """Parts loaded on first use from ``{name: file path or bytes loader}``."""

    def __init__(self, sources: Mapping[str, Any]) -> None:
        self.sources = dict(sources)
        self.loaded: dict[str, onnx.ModelProto] = {}

    def __getitem__(self, name: str) -> onnx.ModelProto:
        if name not in self.loaded:
            source = self.sources[name]
            data = source() if callable(source) else Path(source).read_bytes()
            self.loaded[name] = onnx.load_from_string(data)
        return self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)


def assemble(
    bundle: str | Path,
    configuration: Mapping[str, Any],
    *,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Build the tailored model of ``configuration`` from a ``.mess`` bundle.

    Only the parts the configuration uses are read. The manifest is validated; every part
    read is checked against its sha256.

    Args:
        bundle: the ``.mess`` file from ``mess export``.
        configuration: as ``mess search --json`` prints it (``configuration`` field).
        metadata: extra ``metadata_props`` (predicted mIoU and cost, for instance).
    """
    import hashlib
    import json

    from mess.bundle import MANIFEST, BundleError, parse_manifest

    with zipfile.ZipFile(bundle) as zf:
        try:
            manifest = parse_manifest(json.loads(zf.read(MANIFEST)))
        except KeyError:
            raise BundleError("bundle has no manifest.json") from None

        def loader(path: str, sha: str) -> Any:
            def load() -> bytes:
                data = zf.read(path)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise BundleError(f"bundle member {path!r} does not match its sha256")
                return data

            return load

        parts = LazyParts(
            {name: loader(ref.path, ref.sha256) for name, ref in manifest.parts.items()}
        )
        index = PartsIndex.from_manifest(manifest.model_dump(mode="json"))
        props = {"mess.supernet": manifest.supernet, "mess.bundle": Path(bundle).name}
        props.update(metadata or {})
        return assemble_model(parts, index, configuration, metadata=props)
