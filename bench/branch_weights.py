"""Where a tailored model keeps its weights, and what it costs in onnxruntime (CPU).

``mess.onnx.assemble`` puts each part's weights in the graph its nodes land in: the main graph
or one ``If`` branch. It used to keep every weight in the main graph, read by the branches from
the outer scope, which the ONNX IR allows; but then onnxruntime's CPU provider leaves the
branches' convolutions out of its NCHWc layout optimisation, and the layers behind an early exit
ran slower than the same layers timed as parts. This benchmark runs the headline's dynamic
models both ways, interleaved in one process: as assembled now ("branch") and with every
weight moved back to the main graph ("main"). Same nodes, same weights, same outputs (checked).

    python -m bench.headline --preset small                 # builds bench/out/headline-small
    python -m bench.branch_weights [--workdir bench/out/headline-small] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from rich.table import Table

from bench._common import headline_workdir
from mess.data import build_dataset
from mess.evaluate import Evaluation, evaluate_model


def subgraphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """Every branch graph nested under ``graph``."""
    found = []
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found.append(attr.g)
                found.extend(subgraphs(attr.g))
    return found


def weights_in_main_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every branch's initializers moved to the main graph."""
    hoisted = onnx.ModelProto()
    hoisted.CopyFrom(model)
    for graph in subgraphs(hoisted.graph):
        hoisted.graph.initializer.extend(graph.initializer)
        del graph.initializer[:]
    onnx.checker.check_model(hoisted, full_check=True)
    return hoisted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=headline_workdir("small"))
    ap.add_argument("--images", type=int, help="test images (default: the headline's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    console = Console(width=160)
    summary = json.loads((args.workdir / "headline.json").read_text())
    images = args.images or summary["splits"]["test"]
    models = {}
    for path in sorted((args.workdir / "models").glob("*.onnx")):
        model = onnx.load(str(path))
        if subgraphs(model.graph):
            models[path.stem] = {"branch": model, "main": weights_in_main_graph(model)}
    if not models:
        print(f"error: no dynamic model under {args.workdir / 'models'}", file=sys.stderr)
        return 2
    first = next(iter(models.values()))["branch"]
    _, _, h, w = (d.dim_value for d in first.graph.input[0].type.tensor_type.shape.dim)
    classes = first.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    test = build_dataset(
        f"synth:{classes}", "test", size=(h, w), num_classes=classes, length=images
    )
    samples = [tuple(np.asarray(a) for a in test[i]) for i in range(len(test))]
    blobs = {(k, v): m.SerializeToString() for k, d in models.items() for v, m in d.items()}

    def run(key: tuple[str, str]) -> Evaluation:
        return evaluate_model(blobs[key], samples, num_classes=classes, threads=args.threads)

    run(next(iter(blobs)))  # warm the process up
    runs: dict[tuple[str, str], list[Evaluation]] = {key: [] for key in blobs}
    for r in range(args.rounds):
        for key in blobs:  # each model both ways, one after the other
            runs[key].append(run(key))
        console.print(f"round {r + 1}/{args.rounds} done")

    table = Table(
        title=f"weights per branch vs all in the main graph: {len(samples)} test images "
        f"{h}x{w}, batch 1, {args.threads} thread(s), {args.rounds} rounds interleaved"
    )
    for col in ("model", "exits taken", "main graph mean ms", "per branch mean ms", "ratio"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = []
    for name, layouts in models.items():
        means = {}
        for layout in layouts:
            evals = runs[(name, layout)]
            means[layout] = float(np.mean([ms for e in evals for ms in e.latency_ms]))
        a, b = runs[(name, "main")][0], runs[(name, "branch")][0]
        if a.exit_counts != b.exit_counts or abs(a.miou - b.miou) > 1e-9:
            raise RuntimeError(f"{name}: the two layouts gave different outputs")
        config = json.loads(
            {p.key: p.value for p in layouts["branch"].metadata_props}["mess.configuration"]
        )
        label = " -> ".join([e["id"] for e in config["exits"]] + [config["terminal"]])
        ratio = means["main"] / means["branch"]
        table.add_row(
            label,
            " / ".join(str(c) for c in a.exit_counts),
            f"{means['main']:.2f}",
            f"{means['branch']:.2f}",
            f"{ratio:.2f}x",
        )
        rows.append({"model": label, "exit_counts": a.exit_counts, **means, "ratio": ratio})
    console.print(table)
    print(json.dumps({"images": len(samples), "rounds": args.rounds, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
