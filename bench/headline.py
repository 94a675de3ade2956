"""The paper's headline table, measured on this machine (issue #10, DESIGN section 1).

Pipeline (``mess.demo``'s building blocks, no service): train the supernet in two stages,
calibrate it on the calibration split and export the bundle (each reused by digest from
``bench/out/headline-<preset>/``), profile this machine in-process with the agent's protocol
(:mod:`profilers.measure`, one thread; or ``--profile costs.json``), compute the exact front
once, answer the paper's settings, then assemble each chosen configuration into one ONNX model
and run it on the test split in onnxruntime (batch 1):

- ``original``: the original network, ``final`` alone;
- ``min-cost@0.1pp`` / ``min-cost@1pp``: least expected latency with a calibration-split mIoU
  at most 0.1 / 1 pp below the original's (the paper's "same accuracy");
- ``max-accuracy@1x``: best mIoU with an expected latency at most the original's (the paper's
  "same cost");
- each again as a static model (``<setting>/static``): a single exit always taken, no policy.

Prints a table (test mIoU, GFLOPs, measured mean and p90 latency, speedup, change in pp, and the
calibration-split predictions next to them) and, last, one JSON line::

    {"preset", "device", "baseline": {"miou", "gflops", "latency_ms"},
     "rows": [{"setting", "miou", "gflops", "latency_ms", ...}, ...], ...}

mIoU in [0, 1]; ``latency_ms`` is the mean; ``gflops`` the mean over the test images of the path
each one took. Goals (the paper's headline): at the same accuracy >= 2.83x lower latency, at the
same cost >= +5.33 pp mIoU.

    python bench/headline.py --preset small   # 2-core CPU: 2 h 15 min cold, 42 s reused
    python bench/headline.py --preset paper            # needs a GPU (--force to try without)
    python bench/headline.py --preset small --stage2-epochs 32  # stage 1 reused, stage 2 rebuilt

Train on one machine, measure on another: ``--build-only`` stops after the build; copy the
work folder's ``supernet.pt`` and ``digests.json`` to the target and run there (calibration and
export are redone there; the missing earlier checkpoints are not rebuilt, ``mess.demo``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from mess.demo import PRESETS, Demo, Preset  # noqa: E402

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
ALL_PRESETS: dict[str, Preset] = {**PRESETS, "micro": MICRO}
GPU_PRESETS = ("paper",)

# The paper's three settings: (name, objective, max_drop in mIoU units or budget factor).
SETTINGS = (
    ("min-cost@0.1pp", "min-cost", 0.001),
    ("min-cost@1pp", "min-cost", 0.01),
    ("max-accuracy@1x", "max-accuracy", 1.0),
)
GOAL_SPEEDUP = 2.83  # same accuracy: ResNet-50 DRN 59.02 -> 58.91 mIoU
GOAL_GAIN_PP = 5.33  # same cost: 59.02 -> 64.35 mIoU
SAME_ACCURACY_PP = -0.1  # the paper's "same accuracy" lost 0.11 pp

# Each build output and the preset fields it depends on beyond those of the outputs above it.
BUILD_STAGES = (
    ("supernet-init.pt", ("model", "num_classes", "space", "output_stride")),
    ("stage1.pt", ("size", "train_images", "stage1_epochs", "batch_size", "lr")),
    ("supernet.pt", ("stage2_epochs", "heads_per_step", "stage2_lr")),
    ("stats.npz", ("calibration_images",)),
    ("supernet.mess", ()),
)


# ---------------------------------------------------------------------------- build reuse
def build_digests(preset: Preset) -> dict[str, str]:
    """Digest of every build output's inputs (chained: a change invalidates what follows).

    A field left at None is not hashed, so a field added later with the default None keeps
    the digests, and the builds, of work folders made before it.
    """
    values = asdict(preset)
    digest = hashlib.sha256(b"mess-headline/1").hexdigest()
    out = {}
    for output, fields in BUILD_STAGES:
        own = {f: values[f] for f in fields if values[f] is not None}
        inputs = json.dumps([digest, own], sort_keys=True)
        digest = hashlib.sha256(inputs.encode()).hexdigest()
        out[output] = digest
    return out


def prepare_workdir(workdir: Path, preset: Preset) -> list[str]:
    """Delete build outputs whose recorded input digest differs from the preset's.

    What is left is reused by :meth:`mess.demo.Demo.build` (its make-style rule rebuilds
    whatever is missing or older than its inputs). Returns the names removed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    record = workdir / "digests.json"
    old = json.loads(record.read_text()) if record.exists() else {}
    new = build_digests(preset)
    removed = []
    for output, digest in new.items():
        if old.get(output) == digest:
            continue
        for path in (workdir / output, workdir / (output + ".ckpt")):
            if path.exists():
                path.unlink()
                removed.append(path.name)
    record.write_text(json.dumps(new, indent=1))
    return removed


# ---------------------------------------------------------------------------- device
def gpu_refusal(preset_name: str, *, force: bool, cuda: bool | None = None) -> str | None:
    """Why ``preset_name`` must not run here (``None``: it may)."""
    if preset_name not in GPU_PRESETS or force:
        return None
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return None
    return (
        f"the {preset_name!r} preset is sized for a GPU (ResNet-50 DeepLabV3, 576 exits, "
        "512x512: days on a CPU) and no CUDA device is visible; run --preset small, or add "
        "--force to run it anyway"
    )


def resolve_providers(provider: str) -> list[str]:
    """onnxruntime providers: ``auto`` takes CUDA where this onnxruntime build has it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "cuda" or (provider == "auto" and "CUDAExecutionProvider" in available):
        if "CUDAExecutionProvider" not in available:
            raise SystemExit("--provider cuda: this onnxruntime has no CUDAExecutionProvider")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def describe_device(providers: list[str], threads: int) -> str:
    from profilers.measure import device_attributes

    attrs = device_attributes()
    if providers[0] == "CUDAExecutionProvider":
        import torch

        where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA GPU"
        runtime = "CUDA"
    else:
        where = f"{attrs['cpu']} ({attrs['cores']} cores)"
        runtime = f"CPU, {threads} thread{'s' if threads > 1 else ''}"
    return f"{where}, onnxruntime {attrs['runtime_version']} {runtime}"


# ---------------------------------------------------------------------------- profile
def profile_machine(
    bundle_path: Path,
    workdir: Path,
    *,
    threads: int,
    providers: list[str],
    tier: str,
    reprofile: bool,
    console: Console,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time every part of the bundle with the agent's protocol; cached by what it depends on.

    Returns:
        ``(mess-costs v1 table in ms, record)``; ``record`` has the context and seconds.
    """
    from mess.bundle import read_bundle
    from mess.fileio import sha256_file
    from mess.timings import costs_from_timings
    from profilers.measure import device_attributes, measure_parts, measurement_context

    context = measurement_context(threads, providers, tier)
    attrs = device_attributes()
    key_src = [sha256_file(bundle_path), context, attrs["cpu"], attrs["cores"]]
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    cache = workdir / "profile.json"
    if cache.exists() and not reprofile:
        record = json.loads(cache.read_text())
        if record.get("key") == key:
            console.print(f"[green]reuse[/] profile: {cache.name} ({tier}, {threads} thread)")
            return record["costs"], record
    console.rule(f"[bold]profile this machine (agent protocol, {tier}, {threads} thread)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mess-headline-") as tmp:
        bundle = read_bundle(bundle_path, tmp, check_onnx=False)
        parts = {
            name: bundle.files[ref.path].read_bytes() for name, ref in bundle.manifest.parts.items()
        }
        done = [0]

        def progress(name: str, timing: Any) -> None:
            done[0] += 1
            if done[0] % 10 == 0 or done[0] == len(parts):
                console.print(f"  {done[0]}/{len(parts)} parts timed (last {name})")

        timings = measure_parts(
            parts, threads=threads, providers=providers, tier=tier, progress=progress
        )
        costs = costs_from_timings(bundle.manifest, {n: t.samples_ms for n, t in timings.items()})
    costs["device"] = attrs
    record = {
        "key": key,
        "costs": costs,
        "context": context,
        "seconds": time.perf_counter() - start,
    }
    cache.write_text(json.dumps(record, indent=1))
    return costs, record


# ---------------------------------------------------------------------------- settings
@dataclass
class Row:
    """One setting: its configuration, the search's prediction and the measurement."""

    setting: str
    mode: str  # "original", "dynamic" or "static"
    configuration: Any  # mess.search.Configuration
    predicted: dict[str, Any]
    measured: dict[str, Any] = field(default_factory=dict)
    gflops: float = math.nan  # mean over the test images of the path each one took
    parts_ms: float = math.nan  # the same with the profile: sum of parts for the test exits


def choose_settings(stats: Any, costs: Any, gflops: Any, *, max_exits: int) -> tuple[list, dict]:
    """Compute the dynamic and the static fronts once and answer every setting from them.

    Returns:
        ``(rows, fronts)``: rows original first, then each setting dynamic then static;
        ``fronts``: ``{"dynamic", "static"}`` fronts and the search seconds.
    """
    from mess.search import Configuration, compute_front, evaluate

    original = Configuration((), "final")
    start = time.perf_counter()
    dynamic = compute_front(stats, costs, max_exits=max_exits)
    static = compute_front(stats, costs, max_exits=0)  # a single exit always taken, or final
    seconds = time.perf_counter() - start

    def predicted(config: Any) -> dict[str, Any]:
        ms = evaluate(stats, costs, config)
        return {
            "miou": ms.miou,
            "latency_ms": ms.expected_cost,
            "worst_ms": ms.worst_cost,
            "gflops": evaluate(stats, gflops, config).expected_cost,
            "exit_fractions": ms.exit_fractions,
        }

    rows = [Row("original", "original", original, predicted(original))]
    original_ms = costs.original_cost()
    for name, objective, value in SETTINGS:
        for mode, front in (("dynamic", dynamic), ("static", static)):
            if objective == "min-cost":
                point = front.query("min-cost", max_drop=value)
            else:
                point = front.query("max-accuracy", value * original_ms)
            label = name if mode == "dynamic" else f"{name}/static"
            rows.append(Row(label, mode, point.configuration, predicted(point.configuration)))
    return rows, {"dynamic": dynamic, "static": static, "seconds": seconds}


def path_mean(stats: Any, table: Any, config: Any, exit_counts: list[int]) -> float:
    """Mean cost (``table``'s unit) over images of the path each one took, from how many
    left at each exit (the heads and policies of the exits they passed included)."""
    from mess.search import Problem

    problem = Problem(stats, table)
    exits, _, terminal = problem.check(config)
    path = problem.path_costs(exits, terminal)
    counts = list(exit_counts) + [0] * (len(path) - len(exit_counts))
    return sum(c * p for c, p in zip(counts, path, strict=True)) / max(sum(counts), 1)


def measure_rows(
    rows: list[Row],
    bundle: Path,
    samples: list,
    *,
    num_classes: int,
    stats: Any,
    gflops: Any,
    costs: Any,
    threads: int,
    providers: list[str],
    rounds: int,
    models_dir: Path,
    console: Console,
) -> dict[str, Any]:
    """Assemble each distinct configuration and run it on the test split (batch 1).

    The machine is shared, so its speed drifts: every model runs once per round, in the same
    order, and its latency statistics pool all rounds; the original network's mean per round
    shows the drift. One untimed pass of the original first warms the process up.
    """
    from mess.evaluate import Evaluation, evaluate_model
    from mess.onnx import assemble

    models_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, Path] = {}
    for row in rows:
        key = json.dumps(row.configuration.to_json(), sort_keys=True)
        if key in models:
            continue
        models[key] = models_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
        meta = {
            "mess.predicted_miou": f"{row.predicted['miou']:.6f}",
            "mess.predicted_ms": f"{row.predicted['latency_ms']:.4f}",
        }
        proto = assemble(bundle, json.loads(key), metadata=meta)
        models[key].write_bytes(proto.SerializeToString())

    def run(key: str, images: list) -> Evaluation:
        return evaluate_model(
            str(models[key]), images, num_classes=num_classes, threads=threads, providers=providers
        )

    console.rule(f"[bold]measure on the test split (onnxruntime, batch 1, {rounds} rounds)")
    original = json.dumps(rows[0].configuration.to_json(), sort_keys=True)
    run(original, samples[:10])
    runs: dict[str, list[Evaluation]] = {key: [] for key in models}
    for r in range(rounds):
        for key in models:
            runs[key].append(run(key, samples))
        means = [f"{runs[key][-1].summary()['latency_ms']['mean']:.2f}" for key in models]
        console.print(f"  round {r + 1}/{rounds}: mean ms {', '.join(means)} (original first)")
    pooled = {}
    for key, evals in runs.items():
        first = evals[0]
        if any(e.exit_counts != first.exit_counts or e.miou != first.miou for e in evals):
            raise RuntimeError("a model gave different outputs from one round to the next")
        latency = [ms for e in evals for ms in e.latency_ms]
        pooled[key] = Evaluation(first.miou, first.per_class_iou, first.exit_counts, latency)
    for row in rows:
        key = json.dumps(row.configuration.to_json(), sort_keys=True)
        row.measured = pooled[key].summary()
        counts = row.measured["exit_counts"]
        row.gflops = path_mean(stats, gflops, row.configuration, counts)
        row.parts_ms = path_mean(stats, costs, row.configuration, counts)
    per_round = [e.summary()["latency_ms"]["mean"] for e in runs[original]]
    return {
        "rounds": rounds,
        "original_ms_per_round": per_round,
        "drift": max(per_round) / min(per_round) - 1,
        "models": len(models),
    }


# ---------------------------------------------------------------------------- report
def row_json(row: Row, baseline: Row) -> dict[str, Any]:
    m, b = row.measured, baseline.measured
    return {
        "setting": row.setting,
        "mode": row.mode,
        "miou": m["miou"],
        "gflops": row.gflops,
        "latency_ms": m["latency_ms"]["mean"],
        "latency_p90_ms": m["latency_ms"]["p90"],
        "sum_of_parts_ms": row.parts_ms,
        "speedup": b["latency_ms"]["mean"] / m["latency_ms"]["mean"],
        "miou_change_pp": 100 * (m["miou"] - b["miou"]),
        "exit_fractions": m["exit_fractions"],
        "configuration": row.configuration.to_json(),
        "predicted": {"split": "calibration", **row.predicted},
    }


def ceiling(front: Any) -> dict[str, Any]:
    """The most accurate configuration of the space at any cost (calibration split).

    The search is exact, so no budget can buy more than this: a same-cost gain above
    ``gain_pp`` needs a better supernet, not a better search.
    """
    best = int(front.miou.argmax())
    return {
        "split": "calibration",
        "miou": float(front.miou[best]),
        "gain_pp": 100 * (float(front.miou[best]) - front.reference_miou),
        "latency_ms": float(front.exp[best]),
    }


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's two headline claims, checked on the measured (test) numbers.

    Each is checked on the setting's answer (``met``) and, apart, on its static counterpart
    (``static``): MESS deploys either, and the search's calibration-split choice between
    them need not be the better one on the test split.
    """
    by = {r["setting"]: r for r in rows}

    def same_accuracy(row: dict[str, Any]) -> bool:
        return row["speedup"] >= GOAL_SPEEDUP and row["miou_change_pp"] >= SAME_ACCURACY_PP

    def same_cost(row: dict[str, Any]) -> bool:
        return row["miou_change_pp"] >= GOAL_GAIN_PP and row["speedup"] >= 1.0

    out = {}
    for key, setting, check, goal in (
        ("same_accuracy", "min-cost@0.1pp", same_accuracy, {"goal_speedup": GOAL_SPEEDUP}),
        ("same_cost", "max-accuracy@1x", same_cost, {"goal_pp": GOAL_GAIN_PP}),
    ):
        row, static = by[setting], by[f"{setting}/static"]
        out[key] = {
            "setting": setting,
            "speedup": row["speedup"],
            "miou_change_pp": row["miou_change_pp"],
            **goal,
            "met": check(row),
            "static": {
                "speedup": static["speedup"],
                "miou_change_pp": static["miou_change_pp"],
                "met": check(static),
            },
        }
    return out


def print_table(rows: list[dict[str, Any]], console: Console, title: str) -> None:
    table = Table(
        title=title,
        caption="change pp and speedup: vs the original, both measured on the test split; "
        "pred.: the search's figures on the calibration split; gap: measured - predicted; "
        "parts ms: the profile's sum of parts for the exits the test images took",
    )
    for col, justify in (
        ("setting", "left"),
        ("test mIoU %", "right"),
        ("change pp", "right"),
        ("GFLOPs", "right"),
        ("mean ms", "right"),
        ("p90 ms", "right"),
        ("speedup", "right"),
        ("exits %", "right"),
        ("pred. mIoU %", "right"),
        ("pred. ms", "right"),
        ("gap mIoU pp", "right"),
        ("gap ms %", "right"),
        ("parts ms", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        p = r["predicted"]
        table.add_row(
            r["setting"],
            f"{100 * r['miou']:.2f}",
            f"{r['miou_change_pp']:+.2f}",
            f"{r['gflops']:.3f}",
            f"{r['latency_ms']:.2f}",
            f"{r['latency_p90_ms']:.2f}",
            f"{r['speedup']:.2f}x",
            "/".join(f"{100 * f:.0f}" for f in r["exit_fractions"]),
            f"{100 * p['miou']:.2f}",
            f"{p['latency_ms']:.2f}",
            f"{100 * (r['miou'] - p['miou']):+.2f}",
            f"{100 * (r['latency_ms'] / p['latency_ms'] - 1):+.1f}",
            f"{r['sum_of_parts_ms']:.2f}",
        )
    console.print(table)
    for r in rows:
        c = r["configuration"]
        parts = [
            f"{e['id']}@(tp {e['pixel_threshold']:g}, ti {e['image_threshold']:g})"
            for e in c["exits"]
        ]
        console.print(f"  {r['setting']}: {' -> '.join([*parts, c['terminal']])}")


LABEL_OFFSETS = ((4, 2), (4, -8), (-4, 2), (-4, -8), (4, 12), (4, -18))  # points


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _label_box(x: float, y: float, offset: tuple[float, float], width: float, height: float) -> Box:
    dx, dy = offset
    x0 = x + dx if dx >= 0 else x + dx - width  # a left offset right-aligns the text
    return (x0, y + dy, x0 + width, y + dy + height)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_offsets(anchors: Any, texts: list[str], *, size: float) -> list[tuple[float, float]]:
    """Greedy label placement: for each anchor (in points, in order) the first offset of
    :data:`LABEL_OFFSETS` whose text box (estimated from ``size`` and the text's length)
    overlaps no label placed before it; the first offset when none is free."""
    placed: list[Box] = []
    out: list[tuple[float, float]] = []
    for (x, y), text in zip(anchors, texts, strict=True):
        boxes = [_label_box(x, y, o, 0.6 * size * len(text), size) for o in LABEL_OFFSETS]
        i = next((i for i, b in enumerate(boxes) if not any(_overlap(b, o) for o in placed)), 0)
        placed.append(boxes[i])
        out.append(LABEL_OFFSETS[i])
    return out


def plot(
    fronts: dict[str, Any], rows: list[dict[str, Any]], output: Path, *, title: str, unit: str
) -> None:
    """Latency vs mIoU: both fronts (predicted, calibration) and every row, predicted and
    measured, joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for mode, colour in (("dynamic", "tab:blue"), ("static", "tab:orange")):
        pts = fronts[mode].front_2d()
        ax.step(
            [p.expected_cost for p in pts],
            [100 * p.miou for p in pts],
            where="post",
            color=colour,
            lw=1,
            label=f"{mode} front (calibration, predicted)",
        )
    markers = {"original": "s", "dynamic": "o", "static": "^"}
    colours = {"original": "black", "dynamic": "tab:blue", "static": "tab:orange"}
    labels: dict[tuple[float, float], list[str]] = {}
    for r in rows:
        p = r["predicted"]
        x, y = [p["latency_ms"], r["latency_ms"]], [100 * p["miou"], 100 * r["miou"]]
        colour, marker = colours[r["mode"]], markers[r["mode"]]
        ax.plot(x, y, color=colour, lw=0.6, ls=":")
        ax.scatter(x[:1], y[:1], marker=marker, facecolors="none", edgecolors=colour)
        ax.scatter(x[1:], y[1:], marker=marker, color=colour)
        labels.setdefault((x[1], y[1]), []).append(r["setting"])
    ax.set_xlabel(f"latency ({unit}): hollow = predicted (calibration), filled = measured (test)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    texts = [", ".join(names) for names in labels.values()]  # rows sharing a model: one label
    # Placed after the layout, so that data-to-point coordinates are final.
    anchors = ax.transData.transform(list(labels)) * 72 / fig.dpi  # in points
    offsets = label_offsets(anchors, texts, size=6)
    for (x1, y1), text, (dx, dy) in zip(labels, texts, offsets, strict=True):
        ax.annotate(
            text,
            (x1, y1),
            fontsize=6,
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx >= 0 else "right",
        )
    fig.savefig(output, bbox_inches="tight")  # keeps the labels of the rightmost points
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def build(
    preset_name: str,
    workdir: Path,
    *,
    console: Console,
    stage1_epochs: int | None = None,
    stage2_epochs: int | None = None,
    stage2_lr: float | None = None,
    workers: int | None = None,
) -> Demo:
    """Train, calibrate and export into ``workdir``, reusing what its digests still match.

    ``workers`` (DataLoader processes) changes how fast, not what, is trained: it is not part
    of the digests.
    """
    overrides = {
        "stage1_epochs": stage1_epochs,
        "stage2_epochs": stage2_epochs,
        "stage2_lr": stage2_lr,
        "workers": workers,
    }
    preset = dataclasses.replace(
        ALL_PRESETS[preset_name], **{k: v for k, v in overrides.items() if v is not None}
    )
    removed = prepare_workdir(workdir, preset)
    if removed:
        console.print(f"inputs changed: removed {', '.join(removed)}")
    demo = Demo(workdir, preset, console)
    demo.build()
    return demo


def run_headline(
    preset_name: str,
    workdir: Path,
    *,
    console: Console,
    profile: Path | None = None,
    reprofile: bool = False,
    threads: int = 1,
    provider: str = "auto",
    max_exits: int = 3,
    rounds: int = 3,
    stage1_epochs: int | None = None,
    stage2_epochs: int | None = None,
    stage2_lr: float | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The whole benchmark; returns the summary printed as the JSON line.

    ``stage1_epochs``, ``stage2_epochs`` and ``stage2_lr`` override the preset's
    (``preset_settings`` in the summary records what ran); the build digests rebuild what
    they change.
    """
    import numpy as np

    from mess.bundle import read_bundle
    from mess.costs import load_costs, parse_costs
    from mess.data import build_dataset
    from mess.stats import load_stats

    start = time.perf_counter()
    demo = build(
        preset_name,
        workdir,
        console=console,
        stage1_epochs=stage1_epochs,
        stage2_epochs=stage2_epochs,
        stage2_lr=stage2_lr,
        workers=workers,
    )
    preset = demo.preset
    bundle_path = workdir / "supernet.mess"
    providers = resolve_providers(provider)
    device = describe_device(providers, threads)

    if profile is not None:
        costs, record = load_costs(profile), {"loaded": str(profile)}
    else:
        raw, record = profile_machine(
            bundle_path,
            workdir,
            threads=threads,
            providers=providers,
            tier=preset.tier,
            reprofile=reprofile,
            console=console,
        )
        costs = parse_costs(raw)
    stats = load_stats(workdir / "stats.npz")
    with tempfile.TemporaryDirectory(prefix="mess-headline-") as tmp:
        gflops = parse_costs(read_bundle(bundle_path, tmp, check_onnx=False).costs)

    console.rule("[bold]search (exact, calibration split)")
    rows, fronts = choose_settings(stats, costs, gflops, max_exits=max_exits)
    console.print(
        f"dynamic front: {fronts['dynamic'].configs_evaluated:,} configurations, static: "
        f"{fronts['static'].configs_evaluated:,}, {fronts['seconds']:.1f} s"
    )

    test = build_dataset(
        demo.data,
        "test",
        size=preset.size,
        num_classes=preset.num_classes,
        length=preset.test_images,
    )
    samples = [tuple(np.asarray(a) for a in test[i]) for i in range(len(test))]
    t0 = time.perf_counter()
    measurement = measure_rows(
        rows,
        bundle_path,
        samples,
        num_classes=preset.num_classes,
        stats=stats,
        gflops=gflops,
        costs=costs,
        threads=threads,
        providers=providers,
        rounds=rounds,
        models_dir=workdir / "models",
        console=console,
    )
    measurement["seconds"] = time.perf_counter() - t0
    out_rows = [row_json(r, rows[0]) for r in rows]
    base = out_rows[0]
    summary: dict[str, Any] = {
        "preset": preset_name,
        "device": device,
        "baseline": {
            "miou": base["miou"],
            "gflops": base["gflops"],
            "latency_ms": base["latency_ms"],
            "latency_p90_ms": base["latency_p90_ms"],
        },
        "rows": out_rows,
        "goals": goals(out_rows),
        "ceiling": ceiling(fronts["dynamic"]),
        "splits": {
            "calibration": stats.num_samples,
            "test": len(samples),
        },
        "preset_settings": asdict(preset),
        "search": {
            "max_exits": max_exits,
            "dynamic_configs": fronts["dynamic"].configs_evaluated,
            "static_configs": fronts["static"].configs_evaluated,
            "seconds": fronts["seconds"],
        },
        "profile": {k: v for k, v in record.items() if k not in ("costs", "key")},
        "measurement": measurement,
        "stage_seconds": demo.timings,
        "seconds": time.perf_counter() - start,
    }
    title = (
        f"MESS headline, preset {preset_name}: test split ({len(samples)} images) measured on "
        f"{device}, batch 1; predictions from the calibration split ({stats.num_samples})"
    )
    print_table(out_rows, console, title)
    g = summary["goals"]
    for key, text in (
        ("same_accuracy", f">= {GOAL_SPEEDUP}x lower latency at the same accuracy"),
        ("same_cost", f">= +{GOAL_GAIN_PP} pp mIoU at the same cost"),
    ):
        goal = g[key]
        static = goal["static"]
        verdict = "[green]met[/]" if goal["met"] else "[red]not met[/]"
        static_verdict = "met" if static["met"] else "not met"
        console.print(
            f"goal {text}: {verdict} ({goal['setting']}: {goal['speedup']:.2f}x, "
            f"{goal['miou_change_pp']:+.2f} pp; its static model: {static_verdict}, "
            f"{static['speedup']:.2f}x, {static['miou_change_pp']:+.2f} pp)"
        )
    top = summary["ceiling"]
    console.print(
        f"ceiling: the most accurate configuration at any cost predicts {100 * top['miou']:.2f} % "
        f"({top['gain_pp']:+.2f} pp over the original, {top['latency_ms']:.2f} {costs.unit}) "
        "on the calibration split"
    )
    console.print(
        "original network's mean per round: "
        + ", ".join(f"{ms:.2f}" for ms in measurement["original_ms_per_round"])
        + f" ms (spread {100 * measurement['drift']:.1f} %)"
    )
    png = workdir / f"headline-{preset_name}.png"
    plot(
        fronts,
        out_rows,
        png,
        title=f"MESS headline, preset {preset_name}\n{device}",
        unit=costs.unit,
    )
    (workdir / "headline.json").write_text(json.dumps(summary, indent=1))
    console.print(f"plot {png}, summary {workdir / 'headline.json'}")
    return summary


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value: ..." for words
    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(ALL_PRESETS), default="small")
    ap.add_argument("--json", action="store_true", help="everything but the JSON line to stderr")
    ap.add_argument("--force", action="store_true", help="run a GPU preset without a GPU")
    ap.add_argument("--workdir", type=Path, help="default: bench/out/headline-<preset>")
    ap.add_argument("--profile", type=Path, help="a mess-costs v1 table (ms) instead of timing")
    ap.add_argument("--reprofile", action="store_true", help="time the parts again")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--max-exits", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="timed passes over the test split")
    for stage in (1, 2):
        ap.add_argument(
            f"--stage{stage}-epochs",
            type=_positive_int,
            help=f"instead of the preset's (rebuilds stage {stage} and what follows)",
        )
    ap.add_argument(
        "--stage2-lr",
        type=positive_float,
        help="stage 2's peak learning rate instead of the preset's (rebuilds stage 2 on)",
    )
    ap.add_argument(
        "--workers",
        type=_nonnegative_int,
        help="DataLoader workers for training instead of the preset's (not part of the digests)",
    )
    ap.add_argument(
        "--build-only",
        action="store_true",
        help="train, calibrate and export, then stop (build on a GPU, measure elsewhere)",
    )
    args = ap.parse_args(argv)

    console = Console(stderr=args.json)
    if not console.is_terminal:  # a log file: room for the whole table
        console = Console(stderr=args.json, width=180)
    refusal = gpu_refusal(args.preset, force=args.force)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    workdir = args.workdir or ROOT / "bench" / "out" / f"headline-{args.preset}"
    overrides = {
        "stage1_epochs": args.stage1_epochs,
        "stage2_epochs": args.stage2_epochs,
        "stage2_lr": args.stage2_lr,
        "workers": args.workers,
    }
    if args.build_only:
        demo = build(args.preset, workdir, console=console, **overrides)
        console.print(
            f"built {workdir}: {', '.join(f'{k} {v:.0f} s' for k, v in demo.timings.items())}"
        )
        return 0
    # --json: stdout carries the JSON line alone (training prints its epochs there)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        summary = run_headline(
            args.preset,
            workdir,
            console=console,
            profile=args.profile,
            reprofile=args.reprofile,
            threads=args.threads,
            provider=args.provider,
            max_exits=args.max_exits,
            rounds=args.rounds,
            **overrides,
        )
    sys.stdout.flush()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
