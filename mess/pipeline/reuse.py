"""The pipeline's one reuse rule: a stage's output is reused while its digest matches.

Each stage's output in the work folder is keyed by a digest of the stage's own settings
chained with the digest of the stages before it, so a changed setting invalidates its stage
and every later one. The digests of the folder's outputs are recorded in ``digests.json``.
A stage runs when its output is missing or was made from other inputs, and every later stage
runs after it; but a missing intermediate (a checkpoint) is not rebuilt while a later output
with a matching digest is there, so a folder holding only ``supernet.pt`` and
``digests.json`` (trained on another machine, say) goes on from it. See docs/DESIGN.md,
"The pipeline".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from mess.fileio import write_text_atomic

RECORD = "digests.json"
# The chain's seed; its name predates the module and stays, so older work folders (made by
# bench/headline.py) keep their digests.
SEED = b"mess-headline/1"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline that writes one file of the work folder.

    Attributes:
        output: the file's name in the work folder.
        fields: the settings the output depends on beyond those of the stages before it.
        run: writes the output.
        title: shown and timed under this name; ``None``: a quiet step, neither shown nor timed.
        intermediate: a checkpoint later stages make redundant (see the module's docstring).
    """

    output: str
    fields: tuple[str, ...]
    run: Callable[[], object]
    title: str | None = None
    intermediate: bool = False


def stage_digests(
    settings: Mapping[str, Any], stages: Sequence[tuple[str, Sequence[str]]]
) -> dict[str, str]:
    """Digest of every output's inputs, chained: a change invalidates what follows.

    A setting left at None is not hashed, so a setting added later with the default None
    keeps the digests, and the outputs, of work folders made before it.

    Args:
        settings: every setting by name (e.g. ``dataclasses.asdict(preset)``).
        stages: ``(output, fields)`` in pipeline order.

    Returns:
        ``{output: sha256 hex}``.
    """
    digest = hashlib.sha256(SEED).hexdigest()
    out = {}
    for output, fields in stages:
        own = {f: settings[f] for f in fields if settings[f] is not None}
        inputs = json.dumps([digest, own], sort_keys=True)
        digest = hashlib.sha256(inputs.encode()).hexdigest()
        out[output] = digest
    return out


def discard_stale(workdir: Path, digests: Mapping[str, str]) -> list[str]:
    """Delete the outputs (and their training checkpoints ``.ckpt``) whose recorded digest
    differs from ``digests``, then record ``digests``.

    Returns:
        The names of the files removed.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    record = workdir / RECORD
    old = json.loads(record.read_text()) if record.exists() else {}
    removed = []
    for output, digest in digests.items():
        if old.get(output) == digest:
            continue
        for path in (workdir / output, workdir / (output + ".ckpt")):
            if path.exists():
                path.unlink()
                removed.append(path.name)
    write_text_atomic(record, json.dumps(dict(digests), indent=1))
    return removed


def run_stages(
    *,
    workdir: Path,
    stages: Sequence[Stage],
    settings: Mapping[str, Any],
    console: Console,
    until: str | None = None,
) -> dict[str, float]:
    """Run the stages whose output is not valid in ``workdir``, in order.

    Args:
        workdir: the work folder (made if missing).
        stages: in pipeline order.
        settings: every setting by name; each stage hashes its ``fields`` of it.
        console: where reuse and stage titles are shown.
        until: stop once this output is made (None: every stage). The digests of the
            stages after it are recorded all the same, so their valid outputs stay.

    Returns:
        Seconds per stage run, by title (quiet stages left out).
    """
    digests = stage_digests(settings, [(s.output, s.fields) for s in stages])
    if until is not None and until not in digests:
        raise ValueError(f"no stage makes {until!r}")
    removed = discard_stale(workdir, digests)
    if removed:
        console.print(f"inputs changed: removed {', '.join(removed)}")
    timings: dict[str, float] = {}
    rebuilding = False
    for i, stage in enumerate(stages):
        output = workdir / stage.output
        last = stage.output == until  # wanted itself: made even where later outputs exist
        if not rebuilding:
            if output.exists():
                if stage.title is not None:
                    console.print(f"[green]reuse[/] {stage.title}: {stage.output}")
                if last:
                    break
                continue
            if (
                not last
                and stage.intermediate
                and any((workdir / s.output).exists() for s in stages[i + 1 :])
            ):
                continue
        rebuilding = True  # what follows was made from the old output
        if stage.title is None:
            stage.run()
        else:
            console.rule(f"[bold]{stage.title}")
            start = time.perf_counter()
            stage.run()
            timings[stage.title] = time.perf_counter() - start
        if last:
            break
    return timings
