"""The headline's table and plot (with its label layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.headline_select import GOAL_GAIN_PP, GOAL_SPEEDUP


def _interval(lo_hi: list[float], fmt: str) -> str:
    return f"{lo_hi[0]:{fmt}}..{lo_hi[1]:{fmt}}"  # no space: the column does not wrap it


def print_table(rows: list[dict[str, Any]], console: Console, title: str) -> None:
    """One line per setting: measured on the test split (mean over seeds, with the std over
    seeds, the 95 % interval and the static model at the same constraint next to it),
    predicted on the calibration split."""
    table = Table(
        title=title,
        caption="change pp and speedup: vs the original, both measured on the test split, "
        "mean (± std) over seeds; 95 % CI: paired bootstrap over test images, seeds pooled; "
        "static: the best static cut at the same constraint; pred.: the search's figures on "
        "the calibration split (first seed); gap: measured - predicted; parts ms: the "
        "profile's sum of parts for the exits the test images took",
    )
    for col in (
        "setting",
        "test mIoU %",
        "change pp",
        "95 % CI pp",
        "speedup",
        "95 % CI x",
        "static pp",
        "static x",
        "GFLOPs",
        "mean ms",
        "p90 ms",
        "exits %",
        "pred. mIoU %",
        "pred. ms",
        "gap mIoU pp",
        "gap ms %",
        "parts ms",
    ):
        if col == "setting":
            table.add_column(col, no_wrap=True)
        elif col.startswith("95 %"):
            table.add_column(col, justify="right", no_wrap=True, min_width=13)
        else:
            table.add_column(col, justify="right")
    for r in rows:
        p = r["predicted"]
        several = len(r["per_seed"]) > 1
        table.add_row(
            r["setting"],
            f"{100 * r['miou']:.2f}",
            f"{r['delta_pp']:+.2f}" + (f" ± {r['delta_pp_std']:.2f}" if several else ""),
            _interval(r["delta_pp_ci95"], "+.2f"),
            f"{r['speedup']:.2f}x" + (f" ± {r['speedup_std']:.2f}" if several else ""),
            _interval(r["speedup_ci95"], ".2f"),
            f"{r['static_delta_pp']:+.2f}",
            f"{r['static_speedup']:.2f}x",
            f"{r['gflops']:.3f}",
            f"{r['latency_ms']:.2f}",
            f"{r['latency_p90_ms']:.2f}",
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


def print_protocol(summary: dict[str, Any], console: Console) -> None:
    """The splits' difficulty balance and the original network's regime, one line each."""
    splits = summary["splits"]
    if "difficulty" in splits:
        parts = [
            f"{name} {d['mean']:.3f} (sd {d['std']:.3f}, se {d['sem']:.3f}, {d['images']})"
            for name, d in splits["difficulty"].items()
        ]
        flag = (
            "[green]balanced[/]"
            if splits["balanced"]
            else "[red]means > 1 se apart:[/] "
            + ", ".join(f"{a}/{b}" for a, b in splits["unbalanced"])
        )
        console.print(f"split difficulty, mean: {'; '.join(parts)}: {flag}")
    print_regime(summary["regime"], console)


def print_regime(g: dict[str, Any], console: Console) -> None:
    """The original network's regime (:func:`bench.headline.combine_regimes`), one line, and
    the first seed's mIoU of each head by depth."""

    def pp(value: float | None) -> str:
        return "not measured" if value is None else f"{value:+.2f} pp"

    console.print(
        f"regime (calibration split): twice the stage-1 budget moves final "
        f"{pp(g['convergence_delta_pp'])}: "
        + ("[green]converged[/]" if g["converged"] else "[red]not converged[/]")
        + f"; final - best exit in the first half {pp(g['final_minus_best_shallow_pp'])}"
        + ("" if g["final_beats_shallow"] else " [red](a shallow exit beats final)[/]")
        + f"; depth {'monotone' if g['depth_monotone'] else '[red]not monotone[/]'}"
        + f"; steps original {g['original_steps']}, heads {g['head_steps']}"
        + ("" if g["enough_steps"] else " [red](fewer than the heads)[/]")
    )
    for seed in g["per_seed"][:1]:
        for head, d in seed["depth"].items():
            mious = " ".join(f"{100 * m:.1f}" for m in d["miou"])
            drops = f" (falls at {', '.join(d['drops'])})" if d["drops"] else ""
            console.print(f"  {head} by depth, first seed: {mious}{drops}")


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
