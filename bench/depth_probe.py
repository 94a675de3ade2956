"""Does depth matter on mess-synth? A shallow and a deep exit on easy and hard images.

One ResNet-18 (random init, dilated to output stride 8, as ``mess.nn.build_model`` builds
it) with two exits trained jointly from scratch on mess-synth: ``layer1`` (stride 4, a
receptive field of about 40 pixels) with a head as wide as the final one, and ``final``
(the FCN head on ``layer4``). Both are measured on the test split's easy images
(difficulty < 1/3) and hard images (difficulty > 2/3), once per generator version. If the
shallow exit matches the deep one on hard images, a dynamic network has no reason to run
the deep layers: depth does not matter.

Prints a table, then one JSON line ``{"rows": [...]}``.

    python -m bench.depth_probe                      # versions 1 and 2, 96x96, ~10 min
    python -m bench.depth_probe --version 2 --epochs 2 --train-images 64   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mess.data.synth import (
    LOOKALIKE_GROUPS,
    SynthConfig,
    class_names,
    generate,
    spec_of,
    split_balance,
)
from mess.nn.models import build_model

EASY, HARD = 1.0 / 3.0, 2.0 / 3.0
IGNORE = 255


def render(config: SynthConfig, split: str, count: int) -> tuple[torch.Tensor, ...]:
    """Images ``float32 [N, 3, H, W]`` in [0, 1], masks ``int64 [N, H, W]``, difficulties."""
    images, masks, ds = [], [], []
    for i in range(count):
        image, mask, d = generate(config, split, i)
        images.append(image)
        masks.append(mask)
        ds.append(d)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return x, torch.from_numpy(np.stack(masks)).long(), torch.tensor(ds)


class TwoExits(nn.Module):
    """The backbone with an exit after ``layer1`` and the model's own final exit."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, num_classes: int, output_stride: int) -> None:
        super().__init__()
        model = build_model(
            "torchvision:resnet18", num_classes=num_classes, output_stride=output_stride
        )
        self.backbone = cast(nn.ModuleDict, model.backbone)
        self.final = cast(nn.Sequential, model.classifier)
        width = cast(nn.Conv2d, self.final[0]).out_channels  # the FCN head's 128 channels
        self.shallow = nn.Sequential(
            nn.Conv2d(64, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(width, num_classes, 1),
        )
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        h = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for name, module in self.backbone.items():
            h = module(h)
            if name == "layer1":
                out["layer1"] = self.shallow(h)
        out["final"] = self.final(h)
        return {
            k: F.interpolate(v, size, mode="bilinear", align_corners=False) for k, v in out.items()
        }


def train(
    model: TwoExits, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch: int, seed: int
) -> float:
    """Train both exits jointly (sum of their cross-entropies); returns seconds taken."""
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * (len(x) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for k in range(len(x) // batch):
            idx = order[k * batch : (k + 1) * batch]
            xb, yb = x[idx], y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
            out = model(xb)
            loss = sum(F.cross_entropy(o, yb, ignore_index=IGNORE) for o in out.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            sched.step()
    return time.perf_counter() - start


def interior(y: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Pixels whose label is the same in their whole ``2 * radius + 1`` square: there a
    coarse exit loses nothing to upsampling, so what is left is what it recognises."""
    f = y[:, None].float()
    k = 2 * radius + 1
    hi = F.max_pool2d(f, k, stride=1, padding=radius)
    lo = -F.max_pool2d(-f, k, stride=1, padding=radius)
    return (hi == lo)[:, 0]


def lookalike_confusion(conf: torch.Tensor, names: list[str]) -> float:
    """Share of the pixels of look-alike classes predicted as another class of their group."""
    wrong = total = 0.0
    for group in LOOKALIKE_GROUPS:
        ids = [names.index(n) for n in group if n in names]
        if len(ids) < 2:
            continue
        block = conf[ids][:, ids]
        wrong += float(block.sum() - block.diag().sum())
        total += float(conf[ids].sum())
    return wrong / total if total else float("nan")


@torch.no_grad()
def evaluate(
    model: TwoExits, x: torch.Tensor, y: torch.Tensor, ds: torch.Tensor, num_classes: int
) -> dict[str, dict[str, float]]:
    """Pixel accuracy, mIoU, accuracy inside regions (:func:`interior`) and look-alike
    confusion (:func:`lookalike_confusion`) of each exit on the easy and the hard images."""
    names = class_names(num_classes)
    inside = interior(y)
    model.eval()
    preds: dict[str, list[torch.Tensor]] = {"layer1": [], "final": []}
    for k in range(0, len(x), 32):
        for name, logits in model(x[k : k + 32]).items():
            preds[name].append(logits.argmax(1))
    result: dict[str, dict[str, float]] = {}
    for name, parts in preds.items():
        pred = torch.cat(parts)
        for group, keep in (("easy", ds < EASY), ("hard", ds > HARD)):
            p, t = pred[keep], y[keep]
            valid = t != IGNORE
            core = valid & inside[keep]
            core_acc = float((p[core] == t[core]).double().mean())
            p, t = p[valid], t[valid]
            conf = torch.bincount(t * num_classes + p, minlength=num_classes**2)
            conf = conf.view(num_classes, num_classes).double()
            inter, union = conf.diag(), conf.sum(0) + conf.sum(1) - conf.diag()
            present = conf.sum(1) > 0
            result[f"{name}/{group}"] = {
                "acc": float(inter.sum() / conf.sum()),
                "miou": float((inter[present] / union[present]).mean()),
                "interior_acc": core_acc,
                "lookalike": lookalike_confusion(conf, names),
                "images": int(keep.sum()),
            }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, action="append", choices=(1, 2))
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train-images", type=int, default=480)
    parser.add_argument("--test-images", type=int, default=300)
    parser.add_argument("--output-stride", type=int, default=16, choices=(8, 16))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-seed", type=int, default=0, help="mess-synth's base seed")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows: list[dict[str, Any]] = []
    for version in args.version or [1, 2]:
        config = SynthConfig(
            num_classes=args.classes,
            height=args.size,
            width=args.size,
            seed=args.data_seed,
            version=version,
        )
        lengths = {"train": args.train_images, "test": args.test_images}
        balance = split_balance(config, lengths)
        means = ", ".join(
            f"{split} {s['mean']:.3f} ± {s['se']:.3f}" for split, s in balance["splits"].items()
        )
        print(f"# {spec_of(config)} difficulty: {means} ({balance['max_diff_se']:.2f} SE apart)")
        x, y, _ = render(config, "train", args.train_images)
        tx, ty, tds = render(config, "test", args.test_images)
        torch.manual_seed(args.seed)
        model = TwoExits(args.classes, args.output_stride)
        seconds = train(model, x, y, epochs=args.epochs, batch=args.batch_size, seed=args.seed)
        scores = evaluate(model, tx, ty, tds, args.classes)
        for key, s in scores.items():
            exit_name, group = key.split("/")
            rows.append(
                {"data": spec_of(config), "version": version, "exit": exit_name,
                 "images": group, "n": s["images"], "acc": s["acc"], "miou": s["miou"],
                 "interior_acc": s["interior_acc"], "lookalike": s["lookalike"],
                 "train_s": round(seconds, 1)}
            )  # fmt: skip
        print(f"# version {version}: trained in {seconds:.0f} s", flush=True)

    print(
        f"{'data':<28} {'exit':<7} {'images':<6} {'n':>4} {'pixel acc':>9} {'mIoU':>6} "
        f"{'interior acc':>12} {'look-alike conf.':>16}"
    )
    for r in rows:
        print(
            f"{r['data']:<28} {r['exit']:<7} {r['images']:<6} {r['n']:>4} "
            f"{100 * r['acc']:>9.1f} {100 * r['miou']:>6.1f} "
            f"{100 * r['interior_acc']:>12.1f} {100 * r['lookalike']:>16.1f}"
        )
    print(json.dumps({"rows": rows, "args": vars(args)}))


if __name__ == "__main__":
    main()
