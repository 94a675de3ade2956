"""The MESS supernet: a segmentation network with candidate early exits along its backbone.

The backbone is re-composed from the original model's children (like torchvision's
``IntermediateLayerGetter``, no hooks): one ``nn.Sequential`` segment per position (the layers
from the previous position, or the input, up to and including that block), then the ``final``
segment (layers after the last position), then the original head. Running the segments in order
is the original forward, op for op, so the ``final`` exit is bit-identical to the source model.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.lraspp import LRASPPHead

from mess.fileio import atomic_write
from mess.nn.heads import ExitHead, HeadWidths
from mess.nn.models import (
    BLOCK_TYPES,
    SourceError,
    build_source,
    describe_source,
    replace_num_classes,
    segmentation_model,
)
from mess.space import FINAL, HeadConfig, exit_id, resolve_space, split_exit_id

FORMAT = "mess-supernet"
VERSION = 1
_MOBILENET_PREFIX = "features."


@dataclass(frozen=True)
class Position:
    """A candidate exit point: the output of one backbone block (timm's ``feature_info``)."""

    name: str  # module path in the torchvision backbone, e.g. "layer3.2" or "features.4"
    channels: int
    stride: int  # output stride relative to the input
    index: int  # depth order, 0-based

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FinalHead(nn.Module):
    """The original model's head. LRASPP also reads the low-level feature of one position."""

    def __init__(self, classifier: nn.Module, low_position: int | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.low_position = low_position

    def forward(self, x: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.classifier, LRASPPHead):
            return self.classifier({"low": low, "high": x})
        return self.classifier(x)


class Supernet(nn.Module):
    """A multi-exit segmentation network; build it with :func:`mess.nn.to_supernet`.

    Attributes:
        positions: candidate exit points in depth order.
        heads: the head configurations of the space (the same at every position).
        exit_ids: every candidate exit id ``<position>/<head>`` in depth order, then ``final``.
        num_classes: number of output classes.
        source: description of the source architecture (rebuilt by ``load_supernet``).
    """

    def __init__(
        self,
        *,
        segments: Sequence[nn.Module],
        final_segment: nn.Module,
        final_head: FinalHead,
        positions: Sequence[Position],
        heads: Sequence[HeadConfig],
        num_classes: int,
        source: dict[str, Any],
        widths: HeadWidths,
    ) -> None:
        super().__init__()
        if len(segments) != len(positions):
            raise ValueError("one segment per position expected")
        self.segments = nn.ModuleList(segments)
        self.final_segment = final_segment
        self.final_head = final_head
        self.positions = list(positions)
        self.heads = list(heads)
        self.num_classes = num_classes
        self.source = dict(source)
        self.widths = widths
        # exits[str(position index)][head id] -> ExitHead
        self.exits = nn.ModuleDict(
            {
                str(p.index): nn.ModuleDict(
                    {
                        h.id: ExitHead(
                            h, in_channels=p.channels, num_classes=num_classes, widths=widths
                        )
                        for h in self.heads
                    }
                )
                for p in self.positions
            }
        )
        self._position_by_name = {p.name: p for p in self.positions}

    # ------------------------------------------------------------------ description
    @property
    def exit_ids(self) -> list[str]:
        return [exit_id(p.name, h) for p in self.positions for h in self.heads] + [FINAL]

    @property
    def early_exit_ids(self) -> list[str]:
        return self.exit_ids[:-1]

    def position_of(self, eid: str) -> Position:
        """The position an early exit is attached to."""
        name, _ = split_exit_id(eid)
        try:
            return self._position_by_name[name]
        except KeyError:
            raise KeyError(f"unknown exit {eid!r}: no position {name!r}") from None

    def exit_head(self, eid: str) -> nn.Module:
        """The module computing an exit's logits (``final``: the original head)."""
        if eid == FINAL:
            return self.final_head
        position = self.position_of(eid)
        _, head = split_exit_id(eid)
        group = self.exits[str(position.index)]
        if head.id not in group:
            raise KeyError(f"unknown exit {eid!r}: head {head.id} is not in this supernet's space")
        return group[head.id]

    def manifest(self) -> dict[str, Any]:
        """The JSON description stored next to the weights."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "num_classes": self.num_classes,
            "space": [h.id for h in self.heads],
            "widths": self.widths.to_json(),
            "positions": [p.to_json() for p in self.positions],
            "exits": [
                {
                    "id": eid,
                    "position": self.position_of(eid).name,
                    "position_index": self.position_of(eid).index,
                    "head": split_exit_id(eid)[1].id,
                }
                for eid in self.early_exit_ids
            ],
        }

    def digest(self) -> str:
        """sha256 over the state dict (names, dtypes, shapes and bytes), in key order."""
        h = hashlib.sha256()
        for name, tensor in self.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ forward
    def forward_features(
        self, x: torch.Tensor, positions: Iterable[int] = (), *, final: bool = False
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
        """Run the backbone once, only as deep as needed.

        Args:
            x: images, float [B, 3, H, W] (normalised as the source model expects).
            positions: indices of the positions whose features to return.
            final: also run the rest of the network and return the final head's logits
                (before upsampling).

        Returns:
            ``(features by position index, final logits or None)``.
        """
        wanted = set(positions)
        low = self.final_head.low_position if final else None
        keep = wanted | ({low} if low is not None else set())
        depth = len(self.segments) if final else (max(wanted) + 1 if wanted else 0)
        features: dict[int, torch.Tensor] = {}
        for i in range(depth):
            x = self.segments[i](x)
            if i in keep:
                features[i] = x
        logits = None
        if final:
            x = self.final_segment(x)
            logits = self.final_head(x, features.get(low) if low is not None else None)
            if low is not None and low not in wanted:
                features.pop(low)
        return features, logits

    def forward(
        self, x: torch.Tensor, exits: Iterable[str] | None = None, *, upsample: bool = True
    ) -> dict[str, torch.Tensor]:
        """Logits of the requested exits (all when None), backbone run once.

        Args:
            x: images [B, 3, H, W].
            exits: exit ids; ``None`` for every exit of the space and ``final``.
            upsample: bilinearly resize logits to the input size (as torchvision does);
                False returns them at each head's own resolution.

        Returns:
            dict exit id -> logits [B, C, h, w].

        Example:
            >>> out = sn(images, exits=["layer2.1/crm1-b0-rdi0-fcn", "final"])
        """
        ids = self.exit_ids if exits is None else list(dict.fromkeys(exits))
        by_position: dict[int, list[str]] = {}
        for eid in ids:
            if eid == FINAL:
                continue
            self.exit_head(eid)  # validates the id
            by_position.setdefault(self.position_of(eid).index, []).append(eid)
        features, final_logits = self.forward_features(x, by_position, final=FINAL in ids)
        size = x.shape[-2:]
        out: dict[str, torch.Tensor] = {}
        for eid in ids:
            if eid == FINAL:
                assert final_logits is not None
                logits = final_logits
            else:
                logits = self.exit_head(eid)(features[self.position_of(eid).index])
            if upsample:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            out[eid] = logits
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> str:
        """Save weights and manifest to one file (a dict loadable with ``weights_only``).

        Returns:
            The supernet digest.
        """
        digest = self.digest()
        manifest = self.manifest() | {"digest": digest}
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        payload = {"format": FORMAT, "version": VERSION, "manifest": json.dumps(manifest)}
        payload["state_dict"] = state  # type: ignore[assignment]
        path = Path(path)
        with atomic_write(path) as fh:
            torch.save(payload, fh)
        return digest


# ---------------------------------------------------------------------- conversion


def to_supernet(
    model: nn.Module,
    *,
    space: str | Iterable[str] = "full",
    num_classes: int | None = None,
    head: str | None = None,
    widths: HeadWidths | None = None,
) -> Supernet:
    """Convert a torchvision segmentation model into a MESS supernet.

    The model is copied (its weights are kept, the original is not modified).

    Args:
        model: a torchvision ``FCN``/``DeepLabV3``/``LRASPP`` (ResNet or MobileNetV3 backbone),
            or a classification ResNet/MobileNet, which is first given a segmentation head
            (``head``, default ``fcn``; see :func:`mess.nn.segmentation_model`).
        space: ``full`` (36 heads), ``tiny`` or a list of head ids, the same at every position.
        num_classes: if given and different from the model's, the original head's last layer
            is replaced by a freshly initialised one with that many classes.
        head: segmentation head for a classification backbone: ``fcn`` or ``deeplabv3``.
        widths: channel widths of the exit heads.

    Returns:
        The :class:`Supernet`; ``sn(x, exits=["final"])["final"]`` equals ``model(x)["out"]``.

    Example:
        >>> from torchvision.models.segmentation import deeplabv3_resnet50
        >>> sn = to_supernet(deeplabv3_resnet50(weights=None, weights_backbone=None), space="tiny")
    """
    if not isinstance(getattr(model, "backbone", None), IntermediateLayerGetter):
        if not hasattr(model, "fc") and not hasattr(model, "features"):
            raise SourceError(f"unsupported model {type(model).__name__}")
        model = segmentation_model(
            copy.deepcopy(model), head=head or "fcn", num_classes=num_classes or 21
        )
    elif head is not None:
        raise SourceError("head= is only for classification backbones")
    else:
        model = copy.deepcopy(model)
    source = describe_source(model)
    if num_classes is not None and num_classes != source["num_classes"]:
        replace_num_classes(model, num_classes)
        source["num_classes"] = num_classes
    return _assemble(model, source, resolve_space(space), widths or HeadWidths())


def _assemble(
    model: nn.Module, source: dict[str, Any], heads: list[HeadConfig], widths: HeadWidths
) -> Supernet:
    body: IntermediateLayerGetter = model.backbone
    prefix = "" if "layer1" in body else _MOBILENET_PREFIX
    # Flatten the body into atoms in forward order; blocks are the candidate positions.
    atoms: list[tuple[str, nn.Module, bool]] = []
    for name, child in body.items():
        if isinstance(child, nn.Sequential) and all(isinstance(b, BLOCK_TYPES) for b in child):
            atoms += [(f"{prefix}{name}.{i}", b, True) for i, b in enumerate(child)]
        else:
            atoms.append((f"{prefix}{name}", child, isinstance(child, BLOCK_TYPES)))
    segments: list[nn.Module] = []
    names: list[str] = []
    pending: list[nn.Module] = []
    for name, module, is_block in atoms:
        pending.append(module)
        if is_block:
            segments.append(nn.Sequential(*pending))
            names.append(name)
            pending = []
    if not segments:
        raise SourceError("no backbone blocks found to attach exits to")
    final_segment = nn.Sequential(*pending)

    low_position = None
    if source["head"] == "lraspp":
        low_name = next(k for k, v in body.return_layers.items() if v == "low")
        low_position = names.index(f"{prefix}{low_name}")
    positions = _probe_positions(segments, names)
    return Supernet(
        segments=segments,
        final_segment=final_segment,
        final_head=FinalHead(model.classifier, low_position),
        positions=positions,
        heads=heads,
        num_classes=int(source["num_classes"]),
        source=source,
        widths=widths,
    )


def _probe_positions(segments: list[nn.Module], names: list[str]) -> list[Position]:
    """Channels and output stride of every position, from one small shape pass."""
    size = 64
    device = next(segments[0].parameters()).device
    if device.type == "meta":
        x = torch.empty(1, 3, size, size, device="meta")
    else:
        x = torch.zeros(1, 3, size, size, device=device)
    modes = [m.training for m in segments]
    positions = []
    with torch.no_grad():
        for i, (segment, name) in enumerate(zip(segments, names, strict=True)):
            segment.eval()  # keep BN running statistics untouched
            x = segment(x)
            positions.append(Position(name, int(x.shape[1]), size // int(x.shape[-1]), i))
    for segment, mode in zip(segments, modes, strict=True):
        segment.train(mode)
    return positions


# ---------------------------------------------------------------------- loading


class SupernetFileError(ValueError):
    """A supernet file that cannot be loaded."""


def build_supernet(manifest: dict[str, Any]) -> Supernet:
    """The module structure a manifest describes, randomly initialised."""
    model = build_source(manifest["source"])
    return _assemble(
        model,
        dict(manifest["source"]),
        resolve_space(manifest["space"]),
        HeadWidths.from_json(manifest.get("widths")),
    )


def _is_bundle(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return "manifest.json" in zf.namelist()


def _bundle_weights(path: Path) -> bytes:
    """The supernet file inside a ``mess-bundle``, checked against its sha256."""
    with zipfile.ZipFile(path) as zf:
        try:
            manifest = json.loads(zf.read("manifest.json"))
            ref = manifest["weights"]
            data = zf.read(ref["path"])
        except (KeyError, TypeError, ValueError):
            raise SupernetFileError(f"{path}: bundle without supernet weights") from None
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        raise SupernetFileError(f"{path}: supernet weights do not match their sha256")
    return data


def load_supernet(path: str | Path, *, map_location: str | torch.device = "cpu") -> Supernet:
    """Load a supernet saved with :meth:`Supernet.save`, or from a ``.mess`` bundle.

    Raises:
        SupernetFileError: unknown format or version, missing, unexpected or mis-shaped tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise SupernetFileError(f"{path}: no such file")
    source: Path | io.BytesIO = path
    if zipfile.is_zipfile(path) and _is_bundle(path):
        source = io.BytesIO(_bundle_weights(path))
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise SupernetFileError(
            f"{path}: not a MESS supernet file ({exc.__class__.__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SupernetFileError(f"{path}: not a MESS supernet file (format != {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise SupernetFileError(
            f"{path}: unsupported {FORMAT} version {payload.get('version')!r} (this MESS reads "
            f"version {VERSION})"
        )
    try:
        manifest = json.loads(payload["manifest"])
        state = payload["state_dict"]
        sn = build_supernet(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise SupernetFileError(f"{path}: invalid manifest ({exc})") from None
    expected = sn.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise SupernetFileError(f"{path}: missing tensor {missing[0]!r} ({len(missing)} missing)")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise SupernetFileError(f"{path}: unexpected tensor {unexpected[0]!r}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise SupernetFileError(
                f"{path}: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
            )
    sn.load_state_dict(state)
    return sn
