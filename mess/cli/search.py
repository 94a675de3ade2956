"""``mess search``: the exact exhaustive search, offline (docs/DESIGN.md, "Search")."""

from __future__ import annotations

import json
import sys
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


def run_search(
    stats: Path,
    costs: Path,
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
) -> Any:
    """Load the files, search, optionally store the front; returns the SearchResult.

    Raises:
        UserError: bad files or arguments (code 2), no feasible configuration (code 3).
    """
    from mess.costs import CostsError, load_costs
    from mess.search import NoFeasibleConfiguration, search
    from mess.stats import StatsError, load_stats

    if objective not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}")
    if objective == "max-accuracy" and budget is None:
        raise UserError("--objective max-accuracy needs --budget")
    if objective == "min-cost" and max_drop is None:
        raise UserError("--objective min-cost needs --max-drop")
    try:
        st = load_stats(stats)
        co = load_costs(costs)
    except (StatsError, CostsError) as exc:
        raise UserError(str(exc)) from None
    try:
        result = search(
            st,
            co,
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
    except NoFeasibleConfiguration as exc:
        raise UserError(str(exc), code=3) from None
    except KeyboardInterrupt:
        raise UserError("interrupted", code=130) from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if front_out is not None and result.pareto is not None:
        result.pareto.save(front_out)
    return result


def _table(result: Any, unit: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = result.front if result.objective == "pareto" else [result]
    table = Table(title=f"mess search: {result.objective}")
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
    costs: Annotated[Path, typer.Option(help="Cost table (mess-costs .json).")],
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
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    front_out: Annotated[
        Path | None, typer.Option(help="Store the Pareto front (.npz or .json).")
    ] = None,
) -> None:
    """Exact exhaustive search of early exits and exit policy for a cost budget.

    Exit codes: 2 for bad input files or arguments, 3 when no configuration is feasible.

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
        result = run_search(
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
    if json_out:
        typer.echo(json.dumps(result.to_json()))
    else:
        unit = (result.pareto.space.get("unit") if result.pareto else None) or "cost"
        _table(result, unit)
