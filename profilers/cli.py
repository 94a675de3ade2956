"""``mess-agent``: the on-device profiler (onnxruntime + httpx only)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from profilers.chunks import CHUNK_PARTS, CHUNK_SECONDS
from profilers.measure import TIERS
from profilers.stability import EVERY_SECONDS as SPEED_EVERY_SECONDS

app = typer.Typer(
    name="mess-agent",
    help="MESS on-device profiler: pulls profiling jobs, times ONNX parts, uploads timings.\n\n"
    "Example: mess-agent --server http://mess:8000 --token $MESS_TOKEN --once",
    pretty_exceptions_enable=False,
    add_completion=False,
)
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
TIER_HELP = (
    "quick (until the median is known to +-2 %: 16 runs at least, 2 s at most, a heavy part up "
    "to 256 runs or 30 s), full (+-1 %, 32 runs, 6 s, up to 512 runs or 60 s), or the fixed "
    "quick-fixed (64 runs, 1 s) and full-fixed (256 runs, 3 s)."
)


@app.callback(invoke_without_command=True)
def agent_command(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(envvar="MESS_SERVER", help="Service URL.")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="MESS_TOKEN", help="Agent token (role agent).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Device name (default: host name); agents sharing one form a pool."),
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Work through this device's queued jobs and exit.")
    ] = False,
    providers: Annotated[str, typer.Option(help="Execution providers: cpu, cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(help="Intra-op threads (fixed and recorded).")] = 1,
    tier: Annotated[str, typer.Option(help=TIER_HELP)] = "quick",
    cache_dir: Annotated[Path | None, typer.Option(help="Part cache (by sha256).")] = None,
    cold_cache: Annotated[
        bool,
        typer.Option(
            help="Flush the CPU caches before each timed run of a part: pessimistic costs "
            "where the default (warm) is optimistic, for models whose weights outgrow the cache."
        ),
    ] = False,
    share: Annotated[
        bool,
        typer.Option(
            help="Time one part per distinct computation (parts equal but for their weights "
            "share its timing); --no-share times every part."
        ),
    ] = True,
    chunk_parts: Annotated[
        int,
        typer.Option(
            min=0,
            help="Upload a profiling job's timings every this many parts (or --chunk-seconds), "
            "so that a restart resumes the job where the last chunk ended; 0: all at the end.",
        ),
    ] = CHUNK_PARTS,
    chunk_seconds: Annotated[
        float, typer.Option(min=0.0, help="Upload the timings waiting at least this often.")
    ] = CHUNK_SECONDS,
    poll_seconds: Annotated[
        float, typer.Option(min=0.1, help="Wait between polls of an empty queue.")
    ] = 5.0,
    speed_probe_seconds: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Time a fixed reference computation at least this often while profiling "
            "(and at the start and end): the profile records how far the device's own speed "
            "moved; 0: never.",
        ),
    ] = SPEED_EVERY_SECONDS,
    verbose: Annotated[int, typer.Option("-v", count=True, help="More logging.")] = 0,
) -> None:
    """Register this device, then lease profiling jobs, measure and upload, repeatedly."""
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2), format="%(levelname)s %(name)s: %(message)s"
    )
    if ctx.invoked_subcommand is not None:
        return
    if not server or not token:
        typer.echo(
            "error: --server and --token (or MESS_SERVER / MESS_TOKEN) are required", err=True
        )
        raise typer.Exit(2)
    if tier not in TIERS:
        typer.echo(f"error: --tier must be one of {', '.join(TIERS)}", err=True)
        raise typer.Exit(2)
    import socket

    from profilers.agent import Agent, AgentConfig, AgentError, make_client

    config = AgentConfig(
        server=server,
        token=token,
        name=name or socket.gethostname(),
        threads=threads,
        providers=[PROVIDERS.get(p.strip(), p.strip()) for p in providers.split(",") if p.strip()],
        tier=tier,
        cache_dir=cache_dir,
        poll_seconds=poll_seconds,
        cold_cache=cold_cache,
        share=share,
        chunk_parts=chunk_parts,
        chunk_seconds=chunk_seconds,
        speed_probe_seconds=speed_probe_seconds,
    )
    with make_client(config) as client:
        agent = Agent(config, client)
        agent.install_signal_handlers()
        try:
            done = agent.run(once=once, progress=typer.echo)
        except AgentError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"{done} job(s) done")


@app.command("bench")
def bench_command(
    model: Annotated[Path, typer.Argument(help="Any ONNX model with fixed input shapes.")],
    threads: Annotated[int, typer.Option(help="Intra-op threads.")] = 1,
    tier: Annotated[str, typer.Option(help=TIER_HELP)] = "quick",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Time a model with the agent's protocol, to reproduce the latency the service reports.

    Example: mess-agent bench model.onnx --threads 1
    """
    from profilers.measure import make_session, measurement_context, random_inputs, time_session

    if tier not in TIERS:
        typer.echo(f"error: --tier must be one of {', '.join(TIERS)}", err=True)
        raise typer.Exit(2)
    if not model.is_file():
        typer.echo(f"error: {model}: no such file", err=True)
        raise typer.Exit(2)
    try:
        session = make_session(str(model), threads=threads)
    except Exception as exc:  # onnxruntime's own exception types
        typer.echo(f"error: {model}: not a valid ONNX model ({exc.__class__.__name__})", err=True)
        raise typer.Exit(2) from None
    timing = time_session(session, random_inputs(session), tier=tier, name=model.name)
    result = {
        "model": str(model),
        "median_ms": timing.median,
        "p90_ms": timing.p90,
        "mean_ms": timing.mean,
        "runs": len(timing.samples_ms),
        "warmup_runs": timing.warmup_runs,
        "halfwidth_pct": None if timing.halfwidth is None else 100 * timing.halfwidth,
        "context": measurement_context(threads, None, tier),
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        halfwidth = timing.halfwidth
        known = "" if halfwidth is None else f" (+-{100 * halfwidth:.1f} % at 95 %)"
        typer.echo(
            f"{model.name}: median {timing.median:.3f} ms{known}, p90 {timing.p90:.3f} ms "
            f"({len(timing.samples_ms)} runs after {timing.warmup_runs} warm-up, "
            f"{threads} thread(s))"
        )


def main() -> None:
    app()
