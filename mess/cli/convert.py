"""``mess convert``: torchvision model -> supernet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mess.cli._app import UserError, app

if TYPE_CHECKING:
    from mess.nn import Supernet


def convert(
    model: str,
    *,
    num_classes: int | None = None,
    weights: Path | None = None,
    space: str = "full",
    head: str | None = None,
    output_stride: int | None = None,
    head_width: int | None = None,
    crm_width: int | None = None,
) -> Supernet:
    """Build (or load from a local checkpoint) a torchvision model and convert it."""
    from mess.nn import SourceError, build_model, to_supernet
    from mess.nn.checkpoints import CheckpointError, load_checkpoint
    from mess.nn.heads import HeadWidths

    try:
        source = build_model(
            model, num_classes=num_classes or 21, head=head, output_stride=output_stride
        )
        if weights is not None:
            load_checkpoint(source, weights)
        widths = HeadWidths(crm=crm_width or HeadWidths.crm, head=head_width or HeadWidths.head)
        return to_supernet(source, space=space, num_classes=num_classes, widths=widths)
    except (SourceError, CheckpointError, ValueError) as exc:
        raise UserError(str(exc)) from None


@app.command("convert")
def convert_command(
    model: Annotated[
        str,
        typer.Option(
            help="torchvision:NAME, e.g. torchvision:deeplabv3_resnet50, or a classification "
            "backbone torchvision:resnet18 (+fcn or +deeplabv3 head)."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Supernet file to write.")],
    num_classes: Annotated[int, typer.Option(help="Number of classes.")] = 21,
    weights: Annotated[
        Path | None, typer.Option(help="Local checkpoint (.pth state dict); none = random init.")
    ] = None,
    space: Annotated[
        str, typer.Option(help="Head space: full (36 heads), tiny, or comma-separated head ids.")
    ] = "full",
    head: Annotated[
        str | None, typer.Option(help="Head for a classification backbone: fcn or deeplabv3.")
    ] = None,
    output_stride: Annotated[
        int | None, typer.Option(help="Output stride of a ResNet backbone: 8, 16 or 32.")
    ] = None,
    head_width: Annotated[int | None, typer.Option(help="Inner width of exit heads.")] = None,
    crm_width: Annotated[int | None, typer.Option(help="Output width of the CRM.")] = None,
) -> None:
    """Convert a torchvision segmentation model into a MESS supernet.

    Example: mess convert --model torchvision:deeplabv3_resnet50 --num-classes 19 -o sn.pt
    """
    sn = convert(
        model,
        num_classes=num_classes,
        weights=weights,
        space=space,
        head=head,
        output_stride=output_stride,
        head_width=head_width,
        crm_width=crm_width,
    )
    digest = sn.save(output)
    typer.echo(
        f"wrote {output}: {len(sn.positions)} positions x {len(sn.heads)} heads = "
        f"{len(sn.early_exit_ids)} candidate exits + final; digest {digest[:12]}"
    )
