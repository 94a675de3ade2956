"""MESS training benchmarks.

Schemes (``--preset small --seeds 3``): two-stage, end-to-end and heads-only training at equal
optimizer steps from the headline build's converged stage 1 (:mod:`bench.training_schemes`),
on the calibration split. Prints a table and the paper's claim as met or not, then one JSON
line ``{"seeds", "rows": [{"scheme", "final", "exits_mean", ...}], "claim", "per_seed"}``.

Stage-2 throughput (``--stage2-throughput``): images/s of one stage-2 step training every head
of the full space from one backbone pass, vs. one head, vs. the backbone pass alone, and the
peak memory of each (fresh process each; CPU: peak RSS via ``VmHWM``, CUDA:
``torch.cuda.max_memory_allocated``).

    python -m bench.training --preset small --seeds 3 --json
    python -m bench.training --stage2-throughput [--size 64x64] [--batch-size 8]
    python -m bench.training --stage2-throughput --model torchvision:deeplabv3_resnet50 \
        --classes 19 --size 512x512 --batch-size 16 --mode backbone --mode "all, 36 per step"
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from bench import training_schemes
from bench._common import ALL_PRESETS, headline_workdir, positive_int
from mess.nn import build_model, to_supernet
from mess.nn.train import TrainConfig
from mess.nn.train.distributed import Distributed
from mess.nn.train.optim import build_optimizer
from mess.nn.train.stage2 import Stage2

NUM_CLASSES = 8


def _supernet(
    space: str,
    seed: int,
    model: str = "torchvision:resnet18",
    classes: int = NUM_CLASSES,
    output_stride: int | None = None,
) -> Any:
    torch.manual_seed(seed)
    built = build_model(model, num_classes=classes, output_stride=output_stride)
    return to_supernet(built, space=space)


# ---------------------------------------------------------------------- stage-2 throughput


def _peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _peak_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _throughput_worker(
    mode: str, shape: ThroughputShape, steps: int, threads: int, queue: Any
) -> None:
    try:
        queue.put(_throughput_step(mode, shape, steps, threads))
    except torch.cuda.OutOfMemoryError:  # even one head per group (stage 2 halves to it)
        queue.put({"mode": mode, "error": "out of memory"})


def _one_head(exits: list[str], position: str) -> str:
    """``position``'s ``crm1-b1-rdi0-fcn`` (the full space's choice), else its first head."""
    preferred = f"{position}/crm1-b1-rdi0-fcn"
    return (
        preferred if preferred in exits else next(e for e in exits if e.startswith(position + "/"))
    )


def _throughput_step(mode: str, shape: ThroughputShape, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sn = _supernet(shape.space, 0, shape.model, shape.classes, shape.output_stride).to(device)
    batch, size = shape.batch, shape.size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=g).to(device)
    masks = torch.randint(0, shape.classes, (batch, *size), generator=g).to(device)
    middle = sn.positions[len(sn.positions) // 2].name
    exits = {
        "all": None,
        "all, 36 per step": None,
        "one head": [_one_head(sn.early_exit_ids, middle)],
    }.get(mode)
    base = _peak_mb() if device.type == "cuda" else _rss_mb()
    cuda = device.type == "cuda"

    def autocast() -> Any:  # as training runs: float16 on CUDA (TrainConfig.amp), else off
        return torch.autocast(device.type, dtype=torch.float16, enabled=cuda)

    group = None
    if mode == "backbone":
        sn.eval()

        def step() -> None:
            with torch.no_grad(), autocast():
                sn.forward_features(images, range(len(sn.positions)), final=True)

        n_heads = 0
    else:
        stage = Stage2(exits=exits, heads_per_step=36 if "36" in mode else 0)
        stage.setup(sn, device, Distributed())
        stage.train_mode()
        opt = build_optimizer(stage.parameters(), TrainConfig(batch_size=batch))
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        n_heads = len(stage.exits or ())

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            stage.step(images, masks, lambda loss: scaler.scale(loss).backward(), autocast)
            scaler.step(opt)
            scaler.update()

    step()  # warm-up (allocates the optimiser state)
    _peak_reset()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if mode != "backbone":
        group = stage.heads_per_group  # smaller than asked if a step ran out of GPU memory
    return {
        "mode": mode,
        "heads": n_heads,
        "heads_per_group": group,
        "step_s": seconds,
        "images_per_s": batch / seconds,
        "peak_mb": _peak_mb(),
        "before_mb": base,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }


THROUGHPUT_MODES = ("backbone", "one head", "all", "all, 36 per step")


@dataclass(frozen=True)
class ThroughputShape:
    size: tuple[int, int]
    batch: int
    model: str = "torchvision:resnet18"
    classes: int = NUM_CLASSES
    space: str = "full"
    output_stride: int | None = None


def run_throughput(
    shape: ThroughputShape,
    steps: int,
    threads: int = 1,
    modes: tuple[str, ...] = THROUGHPUT_MODES,
) -> list[dict[str, Any]]:
    """Each mode in a fresh process, so that peak memory is that mode's alone."""
    ctx = mp.get_context("spawn")
    rows = []
    for mode in modes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_throughput_worker, args=(mode, shape, steps, threads, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
    return rows


def print_throughput(rows: list[dict[str, Any]], shape: ThroughputShape) -> None:
    by = {r["mode"]: r for r in rows if "error" not in r}
    size = shape.size
    devices = {r["device"] for r in by.values()}
    table = Table(
        title=f"stage 2 step, {shape.model.rpartition(':')[2]}, space {shape.space}, "
        f"{shape.classes} classes, {size[0]}x{size[1]}, batch {shape.batch}, "
        f"{', '.join(devices)}"
    )
    for col in ("mode", "heads", "per group", "s/step", "images/s", "peak MB", "MB before steps"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["mode"], r["error"], *[""] * 5)
            continue
        table.add_row(
            r["mode"],
            str(r["heads"]),
            "" if r["heads_per_group"] is None else str(r["heads_per_group"]),
            f"{r['step_s']:.3f}",
            f"{r['images_per_s']:.2f}",
            f"{r['peak_mb']:.0f}",
            f"{r['before_mb']:.0f}",
        )
    Console(width=160).print(table)
    if not {"all", "backbone", "one head"} <= by.keys():
        return
    full, backbone, one = by["all"], by["backbone"], by["one head"]
    n = full["heads"]
    # Separate trainings: every head pays its own backbone pass; the heads' own work is what
    # the shared step spends beyond its backbone pass.
    separate = n * backbone["step_s"] + (full["step_s"] - backbone["step_s"])
    Console().print(
        f"{n} heads from one backbone pass: {full['step_s']:.2f} s/step = "
        f"{full['step_s'] / one['step_s']:.1f}x one head's step; {n} separate trainings "
        f"would need about {separate:.1f} s for the same batch ({separate / full['step_s']:.1f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(ALL_PRESETS), default="small")
    parser.add_argument(
        "--seeds", type=positive_int, default=1, help="Training seeds 0..K-1 (record: 3)."
    )
    parser.add_argument(
        "--workdir", type=Path, help="The headline's build folder (default: its own)."
    )
    parser.add_argument("--stage2-throughput", action="store_true", help="Stage-2 cost study.")
    parser.add_argument("--size", default="64x64", help="Throughput input size HxW.")
    parser.add_argument("--batch-size", type=int, default=8, help="Throughput batch size.")
    parser.add_argument("--steps", type=int, default=3, help="Timed throughput steps.")
    parser.add_argument("--model", default="torchvision:resnet18", help="Throughput model.")
    parser.add_argument("--classes", type=int, default=NUM_CLASSES, help="Throughput classes.")
    parser.add_argument("--space", default="full", help="Throughput head space.")
    parser.add_argument("--output-stride", type=int, help="Throughput backbone output stride.")
    parser.add_argument(
        "--mode",
        action="append",
        choices=THROUGHPUT_MODES,
        help="A throughput mode to run (repeat for several; default: all four).",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: best on a shared 2-core box)."
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON line last.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stage2_throughput:
        h, w = (int(v) for v in args.size.lower().split("x"))
        modes = tuple(args.mode or THROUGHPUT_MODES)
        shape = ThroughputShape(
            (h, w), args.batch_size, args.model, args.classes, args.space, args.output_stride
        )
        rows = run_throughput(shape, args.steps, args.threads, modes)
        print_throughput(rows, shape)
        if args.json:
            print(json.dumps({"stage2_throughput": rows}))
        return
    console = Console(stderr=args.json)
    workdir = args.workdir or headline_workdir(args.preset)
    study = training_schemes.run(
        ALL_PRESETS[args.preset], workdir=workdir, seeds=args.seeds, console=console
    )
    training_schemes.print_study(study, console)
    if args.json:
        print(json.dumps(study))


if __name__ == "__main__":
    main()
