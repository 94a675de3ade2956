"""The build: convert, train stage 1, train stage 2, calibrate, export, in one work folder.

Outputs, each reused by :mod:`mess.pipeline.reuse`'s rule:

1. ``supernet-init.pt``: the source model converted into a supernet;
2. ``stage1.pt``, ``supernet.pt``: the two training stages on the preset's data;
3. ``stats.npz``: exit statistics on the calibration split;
4. ``supernet.mess``: the bundle.

See docs/DESIGN.md, "The pipeline".
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from mess.pipeline.calibration import calibrate_supernet
from mess.pipeline.presets import Preset
from mess.pipeline.reuse import Stage, run_stages, stage_digests
from mess.pipeline.training import train_supernet

# Each build output and the preset fields it depends on beyond those of the outputs above it.
BUILD_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("supernet-init.pt", ("model", "num_classes", "space", "output_stride", "seed")),
    (
        "stage1.pt",
        (
            "size",
            "train_images",
            "stage1_epochs",
            "batch_size",
            "lr",
            "optimizer",
            "data_seed",
            "synth_version",
            "augment_scale",
        ),
    ),
    ("supernet.pt", ("stage2_epochs", "heads_per_step", "stage2_lr")),
    ("stats.npz", ("calibration_images",)),
    ("supernet.mess", ()),
)
# Images of the calibration split each training epoch is validated on.
VAL_IMAGES = 64


# Settings whose default is not hashed: the digests of folders built before they existed hold.
UNHASHED_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data_seed": 0,
    "synth_version": 1,
    "optimizer": "sgd",
    "augment_scale": (0.5, 2.0),
}


def digest_settings(preset: Preset) -> dict[str, Any]:
    """The preset's settings as the digests see them (an unhashed default as None)."""
    settings = asdict(preset)
    for name, default in UNHASHED_DEFAULTS.items():
        if settings[name] == default:
            settings[name] = None
    return settings


def build_digests(preset: Preset) -> dict[str, str]:
    """Digest of every build output's inputs (see :func:`mess.pipeline.reuse.stage_digests`)."""
    return stage_digests(digest_settings(preset), BUILD_STAGES)


def training_settings(preset: Preset) -> dict[str, Any]:
    """What both training stages (and the convergence check's extra stage 1) take from the
    preset, besides epochs and learning rate."""
    p = preset
    return dict(
        data=p.data,
        optimizer=p.optimizer,
        batch_size=p.batch_size,
        size=p.size,
        train_length=p.train_images,
        val_length=VAL_IMAGES,
        seed=p.seed,
        data_seed=p.data_seed,
        workers=p.workers,
        augment_scale=p.augment_scale,
    )


def build_stages(*, workdir: Path, preset: Preset) -> list[Stage]:
    """The build's stages for ``preset`` in ``workdir``, in order, not yet run."""
    p = preset
    init, s1, sn = workdir / "supernet-init.pt", workdir / "stage1.pt", workdir / "supernet.pt"
    stats, bundle = workdir / "stats.npz", workdir / "supernet.mess"

    def convert() -> None:
        import torch

        from mess.nn import build_model, to_supernet

        torch.manual_seed(p.seed)
        model = build_model(p.model, num_classes=p.num_classes, output_stride=p.output_stride)
        to_supernet(model, space=p.space).save(init)

    common = training_settings(p)

    def stage1() -> None:
        train_supernet(
            stage="stage1",
            supernet=init,
            output=s1,
            epochs=p.stage1_epochs,
            lr=p.lr,
            resume="auto",
            **common,
        )

    def stage2() -> None:
        train_supernet(
            stage="stage2",
            supernet=s1,
            output=sn,
            epochs=p.stage2_epochs,
            lr=p.stage2_peak_lr,
            heads_per_step=p.heads_per_step,
            resume="auto",
            **common,
        )

    def calibrate() -> None:
        calibrate_supernet(
            supernet=sn,
            data=p.data,
            output=stats,
            size=p.size,
            length=p.calibration_images,
            batch_size=16,
            data_seed=p.data_seed,
        )

    def export() -> None:
        from mess.nn import load_supernet
        from mess.nn.export import export_bundle

        export_bundle(load_supernet(sn), stats, p.size, bundle, name="mess-demo")

    fields = dict(BUILD_STAGES)
    # Checkpoints are intermediates (make's .SECONDARY); the stats and the bundle are products.
    return [
        Stage("supernet-init.pt", fields["supernet-init.pt"], convert, "convert", True),
        Stage(
            "stage1.pt",
            fields["stage1.pt"],
            stage1,
            "train stage 1 (exit-aware backbone)",
            True,
        ),
        Stage(
            "supernet.pt",
            fields["supernet.pt"],
            stage2,
            "train stage 2 (frozen backbone, all heads, distillation)",
            True,
        ),
        Stage("stats.npz", fields["stats.npz"], calibrate, "calibrate"),
        Stage("supernet.mess", fields["supernet.mess"], export, "export bundle"),
    ]


def run_build(
    *, workdir: Path, preset: Preset, console: Console, until: str | None = None
) -> dict[str, float]:
    """Train, calibrate and export into ``workdir``, reusing what its digests still match;
    with ``until`` (an output of :data:`BUILD_STAGES`, e.g. ``"stage1.pt"``), only as far as
    that output.

    ``preset.workers`` (DataLoader processes) changes how fast, not what, is trained: it is
    not part of the digests.

    Returns:
        Seconds per stage run, by stage title (empty when everything was reused).

    Example:
        >>> run_build(workdir=Path("mess-demo"), preset=TINY, console=Console())  # doctest: +SKIP
    """
    return run_stages(
        workdir=workdir,
        stages=build_stages(workdir=workdir, preset=preset),
        settings=digest_settings(preset),
        console=console,
        until=until,
    )
