"""Time this machine's parts in-process with the agent's protocol, without a service.

See docs/DESIGN.md, "Agent measurement protocol".
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mess.fileio import sha256_file, write_text_atomic

CACHE = "profile.json"


def profile_machine(
    *,
    bundle: Path,
    workdir: Path,
    threads: int,
    providers: list[str],
    tier: str,
    reprofile: bool = False,
    console: Console,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time every part of ``bundle`` with the agent's protocol (:mod:`profilers.measure`).

    The result is cached in ``workdir/profile.json`` under a key of what it depends on: the
    bundle's sha256, the measurement context (threads, providers, tier) and the processor.

    Args:
        bundle: the ``.mess`` bundle.
        workdir: where the cache lives.
        threads: onnxruntime intra-op threads.
        providers: onnxruntime execution providers.
        tier: the agent's measurement tier (``smoke``, ``quick``, ``full``).
        reprofile: time the parts again even when the cache matches.
        console: progress.

    Returns:
        ``(mess-costs v1 table in ms, record)``; ``record`` has the context and seconds.
    """
    from mess.bundle import read_bundle
    from mess.timings import costs_from_timings
    from profilers.measure import device_attributes, measure_parts, measurement_context

    context = measurement_context(threads, providers, tier)
    attrs = device_attributes()
    key_src = [sha256_file(bundle), context, attrs["cpu"], attrs["cores"]]
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    cache = workdir / CACHE
    if cache.exists() and not reprofile:
        record = json.loads(cache.read_text())
        if record.get("key") == key:
            console.print(f"[green]reuse[/] profile: {cache.name} ({tier}, {threads} thread)")
            return record["costs"], record
    console.rule(f"[bold]profile this machine (agent protocol, {tier}, {threads} thread)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mess-profile-") as tmp:
        read = read_bundle(bundle, tmp, check_onnx=False)
        parts = {
            name: read.files[ref.path].read_bytes() for name, ref in read.manifest.parts.items()
        }
        done = [0]

        def progress(name: str, timing: Any) -> None:
            done[0] += 1
            if done[0] % 10 == 0 or done[0] == len(parts):
                console.print(f"  {done[0]}/{len(parts)} parts timed (last {name})")

        timings = measure_parts(
            parts, threads=threads, providers=providers, tier=tier, progress=progress
        )
        costs = costs_from_timings(read.manifest, {n: t.samples_ms for n, t in timings.items()})
    costs["device"] = attrs
    record = {
        "key": key,
        "costs": costs,
        "context": context,
        "seconds": time.perf_counter() - start,
    }
    write_text_atomic(cache, json.dumps(record, indent=1))
    return costs, record
