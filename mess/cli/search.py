"""``mess search``: the exact exhaustive search, offline (docs/DESIGN.md, "Search").

Several ``--costs`` (one cost table per device kind) share one walk of the space: a fleet
search, whose answers come one per table, in the order given. ``--shard I/N`` computes one
shard's part and writes its front(s); ``mess merge`` merges the shards' and answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app

# The query's options, shared with ``mess merge`` (which answers the same query).
Objective = Annotated[str, typer.Option(help="max-accuracy, min-cost or pareto.")]
Budget = Annotated[float | None, typer.Option(help="Expected-cost budget.")]
WorstBudget = Annotated[float | None, typer.Option(help="Worst-cost budget.")]
MaxDrop = Annotated[
    float | None, typer.Option(help="Allowed mIoU drop (0.001 = 0.1 pp), min-cost.")
]

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


def check_query(objective: str, budget: float | None, max_drop: float | None) -> None:
    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}")
    if objective == "max-accuracy" and budget is None:
        raise UserError("--objective max-accuracy needs --budget")
    if objective == "min-cost" and max_drop is None:
        raise UserError("--objective min-cost needs --max-drop")


def _load(stats: Path, costs: Sequence[Path]) -> tuple[Any, list[Any]]:
    from mess.costs import CostsError, load_costs
    from mess.stats import StatsError, load_stats

    try:
        return load_stats(stats), [load_costs(c) for c in costs]
    except (StatsError, CostsError) as exc:
        raise UserError(str(exc)) from None


def parse_shard(text: str) -> Any:
    """``"I/N"`` -> ``Shard(I, N)``; a clear error otherwise."""
    from mess.search import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise UserError(f"--shard: {exc}") from None


def run_shard_search(
    stats: Path,
    costs: Sequence[Path],
    *,
    shard: str,
    front_out: Path | None,
    max_exits: int = 3,
    image_thresholds: list[float] | None = None,
    per_exit_thresholds: bool = False,
    truncation: bool = True,
    progress: Any = None,
) -> list[tuple[Path, Any]]:
    """Compute one shard's fronts (``shard`` is ``"I/N"``) and write them to ``front_out``:
    a file for one table, a folder (:func:`front_paths`) for several.

    Returns:
        ``(path, front)`` per table, in order.

    Raises:
        UserError: bad files or arguments (code 2).
    """
    from mess.search import compute_fronts

    part = parse_shard(shard)
    if front_out is None:
        raise UserError("--shard needs --front-out: the shard's front is its whole answer")
    if not costs:
        raise UserError("give --costs at least once")
    if len(costs) > 1 and front_out.is_file():
        raise UserError(f"--front-out {front_out} is a file: several --costs need a folder")
    st, tables = _load(stats, costs)
    try:
        fronts = compute_fronts(
            st,
            tables,
            max_exits=max_exits,
            image_thresholds=image_thresholds,
            per_exit_thresholds=per_exit_thresholds,
            truncation=truncation,
            progress=progress,
            shard=part,
        )
    except KeyboardInterrupt:
        raise UserError("interrupted", code=130) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if len(costs) == 1:
        paths = [front_out]
    else:
        front_out.mkdir(parents=True, exist_ok=True)
        paths = front_paths(front_out, costs)
    for front, path in zip(fronts, paths, strict=True):
        front.save(path)
    return list(zip(paths, fronts, strict=True))


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
    from mess.search import NoFeasibleConfiguration, search_fleet

    check_query(objective, budget, max_drop)
    if not costs:
        raise UserError("give --costs at least once")
    if front_out is not None and len(costs) > 1 and front_out.is_file():
        raise UserError(f"--front-out {front_out} is a file: several --costs need a folder")
    st, tables = _load(stats, costs)
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
    objective: Objective,
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
    budget: Budget = None,
    worst_budget: WorstBudget = None,
    max_drop: MaxDrop = None,
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
    shard: Annotated[
        str | None,
        typer.Option(
            help="Compute only shard I of N (I/N, I from 0) and write its front(s) to "
            "--front-out (exit 0: a shard answers no query); merge all N with mess merge."
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

    check_query(objective, budget, max_drop)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed:,}/{task.total:,}",
        TimeRemainingColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
        console=None,
    ) as bar:
        if shard is not None:
            written = run_shard_search(
                stats,
                costs,
                shard=shard,
                front_out=front_out,
                max_exits=max_exits,
                image_thresholds=parse_thresholds(image_thresholds),
                per_exit_thresholds=per_exit_thresholds,
                truncation=not no_truncation,
                progress=bar,
            )
            _print_shard(shard, written, json_out)
            return
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
    report(answers, [str(c) for c in costs], json_out)


def report(answers: Sequence[Any], labels: Sequence[str], json_out: bool) -> None:
    """Print the answers as ``mess search`` does, one per table (``labels`` name the tables
    of a fleet); a single answer as a single search.

    Raises:
        UserError: code 3 when no answer is feasible.
    """
    if len(answers) == 1:
        if _infeasible(answers[0]):
            raise UserError(str(answers[0]), code=3)
        _print(answers[0], json_out)
        return
    if json_out:
        typer.echo(json.dumps([answer_json(a) for a in answers]))
    else:
        for label, answer in zip(labels, answers, strict=True):
            if _infeasible(answer):
                typer.echo(f"{label}: no feasible configuration: {answer}")
            else:
                _table(answer, _unit(answer), f" ({label})")
    if all(_infeasible(a) for a in answers):
        raise UserError("no cost table has a feasible configuration", code=3)


def _print_shard(shard: str, written: Sequence[tuple[Path, Any]], json_out: bool) -> None:
    """What a ``--shard`` run prints: its part's size and time, and where its fronts went."""
    f = written[0][1]
    if json_out:
        info = {
            "shard": str(parse_shard(shard)),
            "configs_evaluated": f.configs_evaluated,
            "space_size": f.shard["space_size"],
            "seconds": f.seconds,
            "fronts": [{"path": str(p), "points": len(front)} for p, front in written],
        }
        typer.echo(json.dumps(info))
        return
    typer.echo(
        f"shard {shard}: {f.configs_evaluated:,} of {f.shard['space_size']:,} configurations "
        f"in {f.seconds:.2f} s; front(s): {', '.join(str(p) for p, _ in written)}"
    )


def _unit(result: Any) -> str:
    return str((result.pareto.space.get("unit") if result.pareto else None) or "cost")


def _print(result: Any, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(result.to_json()))
    else:
        _table(result, _unit(result))
