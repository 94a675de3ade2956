"""``mess search``: the exact exhaustive search, offline (docs/DESIGN.md, "Search").

Several ``--costs`` (one cost table per device kind) share one walk of the space: a fleet
search, whose answers come one per table, in the order given.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app

OBJECTIVES = ("max-accuracy", "min-cost", "pareto")


def parse_thresholds(text: str | None) -> list[float] | None:
    """``"0,0.1,0.2"`` -> ``[0.0, 0.1, 0.2]``; ``None`` keeps the default grid."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(
            f"invalid --image-thresholds {text!r}: expected numbers like 0,0.1,0.2"
        ) from None
    if not values:
        raise UserError("--image-thresholds is empty")
    return values


def front_paths(folder: Path, costs: Sequence[Path]) -> list[Path]:
    """Where a fleet search stores its fronts: ``<folder>/<index>-<costs stem>.npz``."""
    return [folder / f"{i}-{c.stem}.npz" for i, c in enumerate(costs)]


def run_fleet_search(
    stats: Path,
    costs: Sequence[Path],
    *,
    objective: str,
    budget: float | None = None,
    worst_budget: float | None = None,
    max_drop: float | None = None,
    max_exits: int = 3,
    image_thresholds: list[float] | None = None,
    per_exit_thresholds: bool = False,
    truncation: bool = True,
    front_out: Path | None = None,
    progress: Any = None,
) -> list[Any]:
    """Load the files, search once for every cost table, optionally store the fronts.

    ``front_out`` is a file for one table, a folder (:func:`front_paths`) for several.

    Returns:
        Per table, in order: its ``SearchResult`` or its ``NoFeasibleConfiguration``.

    Raises:
        UserError: bad files or arguments (code 2).
    """
    from mess.costs import CostsError, load_costs
    from mess.search import NoFeasibleConfiguration, search_fleet
    from mess.stats import StatsError, load_stats

    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}")
    if objective == "max-accuracy" and budget is None:
        raise UserError("--objective max-accuracy needs --budget")
    if objective == "min-cost" and max_drop is None:
        raise UserError("--objective min-cost needs --max-drop")
    if not costs:
        raise UserError("give --costs at least once")
    if front_out is not None and len(costs) > 1 and front_out.is_file():
        raise UserError(f"--front-out {front_out} is a file: several --costs need a folder")
    try:
        st = load_stats(stats)
        tables = [load_costs(c) for c in costs]
    except (StatsError, CostsError) as exc:
        raise UserError(str(exc)) from None
    try:
        answers = search_fleet(
            st,
            tables,
            objective=objective,  # type: ignore[arg-type]
            budget=budget,
            worst_budget=worst_budget,
            max_drop=max_drop,
            max_exits=max_exits,
            image_thresholds=image_thresholds,
            per_exit_thresholds=per_exit_thresholds,
            truncation=truncation,
            progress=progress,
        )
    except KeyboardInterrupt:
        raise UserError("interrupted", code=130) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if front_out is not None:
        # one table: its front when the query has an answer (as ever); several: every front
        if len(costs) == 1:
            paths = [front_out]
            fronts = [
                None if isinstance(answers[0], NoFeasibleConfiguration) else answers[0].pareto
            ]
        else:
            front_out.mkdir(parents=True, exist_ok=True)
            paths = front_paths(front_out, costs)
            fronts = [
                a.front if isinstance(a, NoFeasibleConfiguration) else a.pareto for a in answers
            ]
        for front, path in zip(fronts, paths, strict=True):
            if front is not None:
                front.save(path)
    return answers


def _infeasible(answer: Any) -> bool:
    from mess.search import NoFeasibleConfiguration

    return isinstance(answer, NoFeasibleConfiguration)


def answer_json(answer: Any) -> dict[str, Any]:
    """One table's ``--json`` object: the result's, or for no feasible configuration
    ``{"feasible": false, "message", "closest": [front points]}`` (what a single-table run
    says on stderr, with the closest configurations as JSON)."""
    if _infeasible(answer):
        return {
            "feasible": False,
            "message": str(answer),
            "closest": [p.to_json() for p in answer.alternatives],
        }
    out: dict[str, Any] = answer.to_json()
    return out


def _table(result: Any, unit: str, title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = result.front if result.objective == "pareto" else [result]
    table = Table(title=f"mess search: {result.objective}{title}")
    table.add_column("configuration")
    table.add_column("mIoU", justify="right")
    table.add_column(f"expected ({unit})", justify="right")
    table.add_column(f"worst ({unit})", justify="right")
    table.add_column(f"p90 ({unit})", justify="right")
    table.add_column("exit fractions")
    for r in rows:
        table.add_row(
            str(r.configuration),
            f"{100 * r.miou:.2f}",
            f"{r.expected_cost:.4g}",
            f"{r.worst_cost:.4g}",
            f"{r.p90_cost:.4g}",
            " ".join(f"{f:.2f}" for f in r.exit_fractions),
        )
    console.print(table)
    console.print(
        f"reference (original network) mIoU {100 * result.reference_miou:.2f}; "
        f"{result.configs_evaluated:,} configurations in {result.seconds:.2f} s"
    )


@app.command("search")
def search_command(
    stats: Annotated[Path, typer.Option(help="Exit statistics (mess-stats .npz).")],
    costs: Annotated[
        list[Path],
        typer.Option(help="Cost table (mess-costs .json); repeat for a fleet search."),
    ],
    objective: Annotated[str, typer.Option(help="max-accuracy, min-cost or pareto.")],
    max_exits: Annotated[int, typer.Option(min=0, help="Most early exits.")] = 3,
    image_thresholds: Annotated[
        str | None, typer.Option(help="Image-threshold grid, comma list (default 0,0.05,..,0.95).")
    ] = None,
    per_exit_thresholds: Annotated[
        bool, typer.Option("--per-exit-thresholds", help="One threshold pair per exit.")
    ] = False,
    no_truncation: Annotated[
        bool, typer.Option("--no-truncation", help="Terminal is always the final exit.")
    ] = False,
    budget: Annotated[float | None, typer.Option(help="Expected-cost budget.")] = None,
    worst_budget: Annotated[float | None, typer.Option(help="Worst-cost budget.")] = None,
    max_drop: Annotated[
        float | None, typer.Option(help="Allowed mIoU drop (0.001 = 0.1 pp), min-cost.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (an array for several --costs).")
    ] = False,
    front_out: Annotated[
        Path | None,
        typer.Option(
            help="Store the Pareto front (.npz or .json); for several --costs a folder, "
            "one <index>-<costs stem>.npz per table."
        ),
    ] = None,
) -> None:
    """Exact exhaustive search of early exits and exit policy for a cost budget.

    Several --costs search a fleet: one walk of the space answers for every table, in order.

    Exit codes: 2 for bad input files or arguments, 3 when no configuration is feasible (for
    several --costs: for no table).

    Example: mess search --stats s.npz --costs k.json --objective max-accuracy --budget 30 --json
    """
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed:,}/{task.total:,}",
        TimeRemainingColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
        console=None,
    ) as bar:
        answers = run_fleet_search(
            stats,
            costs,
            objective=objective,
            budget=budget,
            worst_budget=worst_budget,
            max_drop=max_drop,
            max_exits=max_exits,
            image_thresholds=parse_thresholds(image_thresholds),
            per_exit_thresholds=per_exit_thresholds,
            truncation=not no_truncation,
            front_out=front_out,
            progress=bar,
        )
    if len(answers) == 1:
        if _infeasible(answers[0]):
            raise UserError(str(answers[0]), code=3)
        _print(answers[0], json_out)
        return
    if json_out:
        typer.echo(json.dumps([answer_json(a) for a in answers]))
    else:
        for path, answer in zip(costs, answers, strict=True):
            if _infeasible(answer):
                typer.echo(f"{path}: no feasible configuration: {answer}")
            else:
                _table(answer, _unit(answer), f" ({path})")
    if all(_infeasible(a) for a in answers):
        raise UserError("no cost table has a feasible configuration", code=3)


def _unit(result: Any) -> str:
    return str((result.pareto.space.get("unit") if result.pareto else None) or "cost")


def _print(result: Any, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(result.to_json()))
    else:
        _table(result, _unit(result))
