"""Source models: build torchvision segmentation models and describe them.

A supernet records how to rebuild its source architecture (never its weights source) as a
small JSON ``source`` dict, e.g. ``{"backbone": "resnet50", "head": "deeplabv3",
"num_classes": 19, "dilation": [false, true, true]}``. :func:`build_source` rebuilds exactly
the module structure torchvision's builders produce, from random init, with no download.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision import models as tvm
from torchvision.models import segmentation as tvs
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.mobilenetv2 import InvertedResidual as InvertedResidualV2
from torchvision.models.mobilenetv3 import InvertedResidual as InvertedResidualV3
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.models.segmentation.lraspp import LRASPPHead

SEGMENTATION_MODELS = (
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
)
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2")
BACKBONES += ("mobilenet_v3_large", "mobilenet_v3_small")
HEADS = ("fcn", "deeplabv3", "lraspp")

_RESNET_LAYOUT = {
    (BasicBlock, (2, 2, 2, 2)): "resnet18",
    (BasicBlock, (3, 4, 6, 3)): "resnet34",
    (Bottleneck, (3, 4, 6, 3)): "resnet50",
    (Bottleneck, (3, 4, 23, 3)): "resnet101",
}
BLOCK_TYPES = (BasicBlock, Bottleneck, InvertedResidualV2, InvertedResidualV3)


class SourceError(ValueError):
    """A model or model spec MESS cannot convert."""


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """Parse ``torchvision:NAME`` (a segmentation model) or ``torchvision:BACKBONE+HEAD``.

    Returns ``(name, head)``; ``head`` is None for segmentation models.
    """
    prefix, sep, name = spec.partition(":")
    if not sep or prefix != "torchvision":
        raise SourceError(f"unknown model spec {spec!r}: expected torchvision:NAME")
    name, _, head = name.partition("+")
    if name in SEGMENTATION_MODELS and not head:
        return name, None
    if name in BACKBONES:
        head = head or "fcn"
        if head not in ("fcn", "deeplabv3"):
            raise SourceError(f"unknown head {head!r} for {name}: use fcn or deeplabv3")
        return name, head
    known = ", ".join(SEGMENTATION_MODELS + BACKBONES)
    raise SourceError(f"unknown torchvision model {name!r}; supported: {known}")


def build_model(
    spec: str,
    *,
    num_classes: int = 21,
    head: str | None = None,
    output_stride: int | None = None,
) -> nn.Module:
    """Build a torchvision segmentation model from random init (no download).

    Args:
        spec: ``torchvision:deeplabv3_resnet50`` or a classification backbone such as
            ``torchvision:resnet18`` (optionally ``torchvision:resnet18+deeplabv3``).
        num_classes: number of output classes.
        head: segmentation head for a classification backbone (``fcn`` or ``deeplabv3``);
            overrides the one in ``spec``.
        output_stride: for a classification backbone: 8, 16 or 32 (dilated as in DRN).

    Returns:
        A model whose ``forward(x)["out"]`` gives logits at the input resolution.
    """
    name, spec_head = parse_model_spec(spec)
    if spec_head is None:
        if head is not None or output_stride is not None:
            raise SourceError(f"{name} is a segmentation model: it takes no head/output stride")
        builder = getattr(tvs, name)
        return builder(weights=None, weights_backbone=None, num_classes=num_classes)
    return segmentation_model(
        name, head=head or spec_head, num_classes=num_classes, output_stride=output_stride
    )


def segmentation_model(
    backbone: str | nn.Module,
    *,
    head: str = "fcn",
    num_classes: int = 21,
    output_stride: int | None = None,
) -> nn.Module:
    """Wrap a torchvision classification backbone with an FCN or DeepLabV3 head.

    The result is a torchvision ``FCN``/``DeepLabV3`` module built like torchvision's own
    segmentation builders (ResNets dilated to ``output_stride``, default 8; MobileNetV3
    dilated to 16; MobileNetV2 keeps 32).

    Args:
        backbone: a name from :data:`BACKBONES` or a torchvision ResNet/MobileNet instance
            (its weights are kept, e.g. loaded from a local checkpoint).
        head: ``fcn`` or ``deeplabv3``.
        num_classes: number of output classes.
        output_stride: 8, 16 or 32 for ResNets.

    Example:
        >>> model = segmentation_model("resnet18", head="fcn", num_classes=8)
    """
    if head not in ("fcn", "deeplabv3"):
        raise SourceError(f"unknown head {head!r}: use fcn or deeplabv3")
    if isinstance(backbone, str):
        if backbone not in BACKBONES:
            raise SourceError(f"unknown backbone {backbone!r}; supported: {', '.join(BACKBONES)}")
        net = _build_backbone(backbone, output_stride)
    else:
        net = backbone
        if output_stride is not None and isinstance(net, ResNet):
            _dilate_resnet(net, _dilation_for(output_stride))
    body, channels = _feature_body(net)
    classifier = (
        FCNHead(channels, num_classes) if head == "fcn" else DeepLabHead(channels, num_classes)
    )
    cls = tvs.FCN if head == "fcn" else tvs.DeepLabV3
    return cls(body, classifier, None)


def _dilation_for(output_stride: int | None) -> list[bool]:
    table = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}
    if output_stride not in table and output_stride is not None:
        raise SourceError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    return table[output_stride or 8]


def _build_backbone(name: str, output_stride: int | None) -> nn.Module:
    if name.startswith("resnet"):
        dilation = _dilation_for(output_stride)
        if name in ("resnet50", "resnet101"):
            return getattr(tvm, name)(weights=None, replace_stride_with_dilation=dilation)
        net = getattr(tvm, name)(weights=None)
        _dilate_resnet(net, dilation)
        return net
    if output_stride is not None:
        raise SourceError(f"{name}: output_stride is only configurable for ResNets")
    if name == "mobilenet_v2":
        return tvm.mobilenet_v2(weights=None)
    return getattr(tvm, name)(weights=None, dilated=True)


def _dilate_resnet(net: nn.Module, dilation: list[bool]) -> None:
    """Trade strides for dilation in place, as torchvision's ``replace_stride_with_dilation``.

    torchvision refuses dilation in ``BasicBlock``; the same transformation is applied here
    to the 3x3 convolutions directly (first conv of a layer's first block keeps the previous
    dilation, every later 3x3 conv gets the new one), so ResNet-18/34 can be DRN-style too.
    Weight shapes do not change, so classification checkpoints still load.
    """
    assert isinstance(net, ResNet)
    current = 1
    for layer_name, dilate in zip(("layer2", "layer3", "layer4"), dilation, strict=True):
        layer = getattr(net, layer_name)
        if not dilate:
            continue
        previous, current = current, current * 2
        first = layer[0]
        if isinstance(first, Bottleneck):
            if first.conv2.stride == (1, 1):
                continue  # torchvision already dilated it
            _set_conv(first.conv2, stride=1, dilation=previous)
            rest = [b.conv2 for b in layer[1:]]
        else:
            _set_conv(first.conv1, stride=1, dilation=previous)
            _set_conv(first.conv2, stride=1, dilation=current)
            rest = [c for b in layer[1:] for c in (b.conv1, b.conv2)]
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
        for conv in rest:
            _set_conv(conv, stride=1, dilation=current)


def _set_conv(conv: nn.Conv2d, *, stride: int, dilation: int) -> None:
    conv.stride = (stride, stride)
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def _feature_body(net: nn.Module) -> tuple[IntermediateLayerGetter, int]:
    """The feature extractor of a classification net, as torchvision's builders make it."""
    if isinstance(net, ResNet):
        channels = net.fc.in_features
        return IntermediateLayerGetter(net, return_layers={"layer4": "out"}), channels
    features = getattr(net, "features", None)
    if not isinstance(features, nn.Sequential):
        raise SourceError(f"unsupported backbone {type(net).__name__}: expected ResNet/MobileNet")
    last = len(features) - 1
    channels = _out_channels(features[last])
    return IntermediateLayerGetter(features, return_layers={str(last): "out"}), channels


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise SourceError(f"cannot find the output channels of {type(module).__name__}")
    return int(convs[-1].out_channels)


# --------------------------------------------------------------------------- description


def describe_source(model: nn.Module) -> dict[str, Any]:
    """Describe a supported segmentation model so that :func:`build_source` rebuilds it."""
    backbone = getattr(model, "backbone", None)
    classifier = getattr(model, "classifier", None)
    if not isinstance(backbone, IntermediateLayerGetter) or classifier is None:
        raise SourceError(
            f"unsupported model {type(model).__name__}: expected a torchvision segmentation "
            "model (FCN, DeepLabV3, LRASPP); wrap a classification backbone with "
            "mess.nn.segmentation_model(...)"
        )
    if isinstance(classifier, FCNHead):
        head, num_classes = "fcn", classifier[-1].out_channels
    elif isinstance(classifier, DeepLabHead):
        head, num_classes = "deeplabv3", classifier[-1].out_channels
    elif isinstance(classifier, LRASPPHead):
        head, num_classes = "lraspp", classifier.low_classifier.out_channels
    else:
        raise SourceError(f"unsupported segmentation head {type(classifier).__name__}")
    source: dict[str, Any] = {"head": head, "num_classes": int(num_classes)}
    if "layer1" in backbone:
        blocks = tuple(len(backbone[f"layer{i}"]) for i in range(1, 5))
        key = (type(backbone["layer1"][0]), blocks)
        if key not in _RESNET_LAYOUT:
            raise SourceError(f"unsupported ResNet layout {blocks}")
        source["backbone"] = _RESNET_LAYOUT[key]
        source["dilation"] = [_layer_dilated(backbone[f"layer{i}"]) for i in (2, 3, 4)]
    else:
        blocks_v3 = [m for m in backbone.values() if isinstance(m, InvertedResidualV3)]
        blocks_v2 = [m for m in backbone.values() if isinstance(m, InvertedResidualV2)]
        if len(blocks_v3) == 15:
            source["backbone"] = "mobilenet_v3_large"
        elif len(blocks_v3) == 11:
            source["backbone"] = "mobilenet_v3_small"
        elif len(blocks_v2) == 17:
            source["backbone"] = "mobilenet_v2"
        else:
            raise SourceError("unsupported MobileNet layout")
        source["dilated"] = any(
            c.dilation != (1, 1) for c in backbone.modules() if isinstance(c, nn.Conv2d)
        )
        source["return_layers"] = dict(backbone.return_layers)
    return source


def _layer_dilated(layer: nn.Sequential) -> bool:
    first = layer[0]
    conv = first.conv2 if isinstance(first, Bottleneck) else first.conv1
    return conv.stride == (1, 1)


def build_source(source: dict[str, Any]) -> nn.Module:
    """Rebuild the module structure described by :func:`describe_source` (random init)."""
    try:
        name, head, num_classes = source["backbone"], source["head"], int(source["num_classes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"invalid source description {source!r}") from exc
    if name not in BACKBONES or head not in HEADS:
        raise SourceError(f"unsupported source {name}+{head}")
    if name.startswith("resnet"):
        dilation = [bool(d) for d in source.get("dilation", [False, True, True])]
        if name in ("resnet50", "resnet101"):
            net = getattr(tvm, name)(weights=None, replace_stride_with_dilation=dilation)
        else:
            net = getattr(tvm, name)(weights=None)
            _dilate_resnet(net, dilation)
        body, channels = _feature_body(net)
    else:
        if name == "mobilenet_v2":
            features = tvm.mobilenet_v2(weights=None).features
        else:
            dilated = bool(source.get("dilated", True))
            features = getattr(tvm, name)(weights=None, dilated=dilated).features
        return_layers = dict(source.get("return_layers") or {str(len(features) - 1): "out"})
        body = IntermediateLayerGetter(features, return_layers=return_layers)
        channels = _out_channels(features[len(features) - 1])
    if head == "lraspp":
        low_channels = _out_channels(body[_key_for(return_layers, "low")])
        return tvs.LRASPP(body, low_channels, channels, num_classes)
    if head == "fcn":
        return tvs.FCN(body, FCNHead(channels, num_classes), None)
    return tvs.DeepLabV3(body, DeepLabHead(channels, num_classes), None)


def _key_for(return_layers: dict[str, str], value: str) -> str:
    for k, v in return_layers.items():
        if v == value:
            return k
    raise SourceError(f"return layer {value!r} missing in {return_layers}")


def replace_num_classes(model: nn.Module, num_classes: int) -> None:
    """Give the model's own head a fresh output layer for ``num_classes`` (in place)."""
    classifier = model.classifier
    if isinstance(classifier, LRASPPHead):
        for attr in ("low_classifier", "high_classifier"):
            old = getattr(classifier, attr)
            setattr(classifier, attr, nn.Conv2d(old.in_channels, num_classes, 1))
    else:
        old = classifier[-1]
        classifier[-1] = nn.Conv2d(old.in_channels, num_classes, 1)
