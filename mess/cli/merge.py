"""``mess merge``: merge the fronts of a sharded ``mess search`` and answer its query.

The shards' fronts (``mess search ... --shard I/N --front-out F``) merge into exactly the
unsharded search's front (docs/DESIGN.md, "Search"), so the answer printed here is the one
the unsharded ``mess search`` prints, field for field but for ``seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from mess.cli._app import UserError, app
from mess.cli.search import Budget, MaxDrop, Objective, WorstBudget, check_query, report


def _index(path: Path) -> int:
    """The table index of a fleet front file ``<index>-<stem>.npz``."""
    head = path.name.partition("-")[0]
    return int(head) if head.isdigit() else -1


def read_shards(paths: Sequence[Path]) -> tuple[list[list[Any]], list[str]]:
    """Load shard fronts: files (one table) or folders (a fleet, one ``<index>-<stem>.npz``
    per table, the same names in every folder).

    Returns:
        ``shards[s][k]`` (shard ``s``'s front of table ``k``) and the tables' labels.

    Raises:
        UserError: a missing path, files mixed with folders, folders that differ, or a file
            that is not a front.
    """
    from mess.search import ParetoFront

    if not paths:
        raise UserError("give the shards' front files (or, for a fleet, their folders)")
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
    folders = [p.is_dir() for p in paths]
    if any(folders) and not all(folders):
        raise UserError("give either front files (one table) or folders (a fleet), not both")
    try:
        if not all(folders):
            return [[ParetoFront.load(p)] for p in paths], [str(paths[0])]
        names = sorted((f.name for f in paths[0].glob("*.npz")), key=lambda n: _index(Path(n)))
        if not names:
            raise UserError(f"{paths[0]}: no front files (<index>-<costs stem>.npz)")
        for p in paths[1:]:
            theirs = sorted(f.name for f in p.glob("*.npz"))
            if theirs != sorted(names):
                raise UserError(
                    f"{p} holds other front files than {paths[0]}: {', '.join(theirs) or 'none'}"
                )
        return [[ParetoFront.load(p / n) for n in names] for p in paths], names
    except ValueError as exc:
        raise UserError(str(exc)) from None


def run_merge(
    paths: Sequence[Path],
    *,
    objective: str,
    budget: float | None = None,
    worst_budget: float | None = None,
    max_drop: float | None = None,
    front_out: Path | None = None,
) -> tuple[list[Any], list[str]]:
    """Merge the shards' fronts, optionally store the merged ones, answer the query.

    ``front_out`` is a file for one table, a folder (the shards' file names) for a fleet.

    Returns:
        Per table, in order: its ``SearchResult`` or its ``NoFeasibleConfiguration``; and
        the tables' labels.

    Raises:
        UserError: bad files or arguments, or shards that do not make one whole search.
    """
    from mess.search import merge_fleet, merge_fronts
    from mess.search.api import answer_fronts

    check_query(objective, budget, max_drop)
    shards, labels = read_shards(paths)
    fleet = paths[0].is_dir()
    if front_out is not None and fleet and front_out.is_file():
        raise UserError(f"--front-out {front_out} is a file: a fleet's shards need a folder")
    try:
        fronts = merge_fleet(shards) if fleet else [merge_fronts([s[0] for s in shards])]
        answers = answer_fronts(
            fronts,
            objective=objective,  # type: ignore[arg-type]
            budget=budget,
            worst_budget=worst_budget,
            max_drop=max_drop,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if front_out is not None:
        if fleet:
            front_out.mkdir(parents=True, exist_ok=True)
            for name, front in zip(labels, fronts, strict=True):
                front.save(front_out / name)
        else:
            fronts[0].save(front_out)
    return answers, labels


@app.command("merge")
def merge_command(
    fronts: Annotated[
        list[Path],
        typer.Argument(
            help="Every shard's front file of one sharded search (for a fleet: every shard's "
            "--front-out folder).",
            show_default=False,
        ),
    ],
    objective: Objective,
    budget: Budget = None,
    worst_budget: WorstBudget = None,
    max_drop: MaxDrop = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print what mess search --json prints.")
    ] = False,
    front_out: Annotated[
        Path | None,
        typer.Option(help="Store the merged front (for a fleet a folder, one file per table)."),
    ] = None,
) -> None:
    """Merge the fronts of a sharded search (mess search --shard I/N) and answer its query.

    The merged front is exactly the unsharded search's: the answer is the one mess search
    prints, but for seconds (the shards' summed time). Every shard 0..N-1 must be given once.

    Exit codes: 2 for bad or incomplete shards or arguments, 3 when no configuration is
    feasible (for a fleet: for no table).

    Example: mess merge s0.npz s1.npz s2.npz --objective max-accuracy --budget 30 --json
    """
    answers, labels = run_merge(
        fronts,
        objective=objective,
        budget=budget,
        worst_budget=worst_budget,
        max_drop=max_drop,
        front_out=front_out,
    )
    report(answers, labels, json_out)
