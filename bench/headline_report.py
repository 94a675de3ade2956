"""The headline's table and plot (with its label layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.headline_select import GOAL_GAIN_PP, GOAL_SPEEDUP


def print_table(rows: list[dict[str, Any]], console: Console, title: str) -> None:
    """One line per setting: measured on the test split, predicted on the calibration split."""
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


def print_verdicts(summary: dict[str, Any], console: Console, *, unit: str) -> None:
    """The paper's two goals, the space's ceiling and the machine's drift, one line each."""
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
        f"({top['gain_pp']:+.2f} pp over the original, {top['latency_ms']:.2f} {unit}) "
        "on the calibration split"
    )
    measurement = summary["measurement"]
    console.print(
        "original network's mean per round: "
        + ", ".join(f"{ms:.2f}" for ms in measurement["original_ms_per_round"])
        + f" ms (spread {100 * measurement['drift']:.1f} %)"
    )
