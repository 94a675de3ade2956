"""The whole chain at the paper's scale: convert, calibrate, export, push, profile, search.

Each step runs as its own process, the way a user runs it (``mess ...``, ``mess-agent``),
timed (wall) with its peak RSS (``wait4``'s ``ru_maxrss``). The push goes to a local
``mess serve`` on SQLite in the work folder, with the service's default settings; the
server's peak RSS is taken per step from ``/proc/<pid>/status`` (``VmHWM``, reset before
each step through ``clear_refs``; Linux), so the table shows what the push, the profiling
job and the search cost the server apart. The calibration uses a few synthetic images: the
statistics are for timing the chain, not for accuracy.

The default is the paper's space (DeepLabV3-ResNet50, 16 positions x 36 heads, 512x512);
``--model torchvision:resnet18 --space tiny --size 64`` runs the same chain in about a
minute::

    python -m bench.paper_scale                      # the paper's space (about 45 min)
    python -m bench.paper_scale --model torchvision:resnet18 --space tiny --size 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._common import positive_int
from mess.timings import precision_summary

ADMIN = "paper-scale-admin-0123456789abcdef"
DEVICE = "paper-scale"


@dataclass
class Step:
    """One step of the chain: its wall time and peak memory."""

    name: str
    wall_s: float
    peak_rss_mb: float | None  # the step's own process (None: it runs in the server)
    server_rss_mb: float | None = None  # the server's peak during the step
    note: str = ""


def parse_size(text: str) -> tuple[int, int]:
    """``512`` or ``512x1024`` -> ``(H, W)``."""
    try:
        h, _, w = text.lower().partition("x")
        size = (int(h), int(w or h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, not {text!r}") from None
    if min(size) < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, not {text!r}")
    return size


def run(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """Run a command to its end; its stdout, wall seconds and peak RSS in MB.

    Raises:
        RuntimeError: with the command's output tail when it fails.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{(stdout + stderr)[-3000:]}"
        )
    return stdout, wall, usage.ru_maxrss / 1024  # KiB on Linux


class Server:
    """``mess serve`` on SQLite in ``data_dir``, with the service's default limits."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        from mess.localhost import free_port

        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "MESS_DATA_DIR": str(data_dir), "MESS_ADMIN_TOKEN": ADMIN}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mess", "serve", "--host", "127.0.0.1"]
                + ["--port", self.url.rsplit(":", 1)[1]],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.log = log

    def wait_healthy(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mess serve exited with {self.process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"mess serve did not answer on {self.url} in {timeout:.0f} s")

    def reset_peak(self) -> None:
        """Start a new peak-RSS window (``clear_refs``: 5 resets ``VmHWM``)."""
        # where it cannot, the peak runs from the start: still an upper bound
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float | None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def chain(
    workdir: Path,
    *,
    model: str,
    space: str,
    size: tuple[int, int],
    images: int,
    num_classes: int,
    tier: str,
    check: bool,
    budget_ms: float | None,
    truncation: bool = False,
    compare_tier: str | None = None,
) -> tuple[list[Step], dict[str, Any]]:
    """Run every step in ``workdir``; the steps and a few facts (bundle size, parts, ...).

    ``compare_tier``: then profile the bundle again with that tier as a second device and
    compare the two profiles' answers (:func:`compare_profiles`)."""
    py = sys.executable
    hw = f"{size[0]}x{size[1]}"
    sn, stats, bundle = workdir / "sn.pt", workdir / "stats.npz", workdir / "sn.mess"
    steps: list[Step] = []
    facts: dict[str, Any] = {}

    def step(name: str, argv: Sequence[str], server: Server | None = None) -> str:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        if server is not None:
            server.reset_peak()
        out, wall, rss = run(argv)
        server_rss = server.peak_rss_mb() if server is not None else None
        steps.append(Step(name, round(wall, 1), round(rss), server_rss and round(server_rss)))
        # as it goes: a run stopped at a later step keeps what the earlier ones measured
        print(f"    {steps[-1]}", file=sys.stderr, flush=True)
        return out

    mess = [py, "-m", "mess"]
    convert = ["convert", "--model", model, "--space", space, "--num-classes", str(num_classes)]
    step("convert", [*mess, *convert, "-o", str(sn)])
    calibrate = ["calibrate", "--supernet", str(sn), "--data", "synth", "--length", str(images)]
    calibrate += ["--size", hw, "--batch-size", str(images), "--device", "cpu"]
    step("calibrate", [*mess, *calibrate, "-o", str(stats)])
    export = ["export", "--supernet", str(sn), "--stats", str(stats), "--input-size", hw]
    step("export", [*mess, *export, "--check" if check else "--no-check", "-o", str(bundle)])
    facts["supernet_mb"] = round(sn.stat().st_size / 1e6, 1)
    facts["bundle_mb"] = round(bundle.stat().st_size / 1e6, 1)
    with zipfile.ZipFile(bundle) as zf:
        facts["parts"] = sum(1 for n in zf.namelist() if n.startswith("parts/"))

    server = Server(workdir / "data", workdir / "server.log")
    try:
        start = time.perf_counter()
        server.wait_healthy()
        started = server.peak_rss_mb()
        wall = round(time.perf_counter() - start, 1)
        steps.append(Step("serve (start)", wall, None, started and round(started)))
        token = [py, "-m", "mess", "token", "create", "--server", server.url, "--token", ADMIN]
        engineer = run([*token, "--role", "engineer", "--name", "bench"])[0].split()[-1]
        agent = run([*token, "--role", "agent", "--name", "bench-agent"])[0].split()[-1]
        auth = ["--server", server.url, "--token", engineer]
        pushed = step("push", [py, "-m", "mess", "push", str(bundle), *auth, "--json"], server)
        supernet = json.loads(pushed.strip().splitlines()[-1])["id"]

        def agent_run(name: str, tier: str) -> list[str]:
            cache = str(workdir / "agent-cache")  # a second profile downloads nothing again
            argv = [py, "-m", "profilers", "--server", server.url, "--token", agent]
            return argv + ["--name", name, "--once", "--tier", tier, "--cache-dir", cache]

        step("profile (mess-agent --once)", agent_run(DEVICE, tier), server)
        facts |= profile_precision(server.url, engineer, supernet)
        query = [py, "-m", "mess", "query", "--supernet", supernet, "--device", DEVICE, *auth]
        query.append("--truncation" if truncation else "--no-truncation")
        front = step("search (pareto front)", [*query, "--objective", "pareto", "--json"], server)
        facts["front_points"] = len(json.loads(front).get("front") or [])
        if budget_ms is not None:
            budget = ["--budget-ms", str(budget_ms), "--json", "-o", str(workdir / "model.onnx")]
            answer = step("query (max-accuracy)", [*query, *budget], server)
            picked = json.loads(answer)
            facts["answer_exits"] = len(picked["configuration"]["exits"])
            facts["answer_expected_ms"] = round(picked["expected_cost"], 3)
        if compare_tier is not None:
            other = f"{DEVICE}-{compare_tier}"
            step(f"profile again (--tier {compare_tier})", agent_run(other, compare_tier), server)
            facts["compare"] = compare_profiles(
                server.url, engineer, supernet, [DEVICE, other], workdir, stats
            )
    finally:
        server.stop()
    return steps, facts


def stored_profile(url: str, token: str, supernet: str, device: str = DEVICE) -> dict[str, Any]:
    """The newest stored profile of ``supernet`` on ``device`` (costs and context)."""
    import httpx

    h = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(
        f"{url}/v1/profiles", headers=h, params={"supernet_id": supernet, "device": device}
    )
    listed.raise_for_status()
    profile = httpx.get(f"{url}/v1/profiles/{listed.json()['items'][0]['id']}", headers=h)
    profile.raise_for_status()
    return profile.json()  # type: ignore[no-any-return]


def profile_precision(url: str, token: str, supernet: str) -> dict[str, Any]:
    """:func:`precision_summary` of the newest stored profile of ``supernet`` on the bench's
    device."""
    return precision_summary(stored_profile(url, token, supernet)["context"] or {})


def compare_profiles(
    url: str, token: str, supernet: str, devices: list[str], workdir: Path, stats: Path
) -> dict[str, Any]:
    """Both devices' stored cost tables (written to ``workdir``) and their answers compared
    by :func:`bench.profile_agreement.agreement` (at most 2 exits; the accuracy side drawn
    at random on the bundle's exits, 500 samples: a few calibration images make a front of a
    handful of points), with the second profile's precision."""
    from bench.profile_agreement import agreement, random_accuracy
    from mess.costs import load_costs
    from mess.stats import load_stats

    profiles = [stored_profile(url, token, supernet, device) for device in devices]
    tables = []
    for device, profile in zip(devices, profiles, strict=True):
        path = workdir / f"{device}.costs.json"  # for bench.profile_agreement's own runs
        path.write_text(json.dumps(profile["costs"]))
        tables.append(load_costs(path))
    result = agreement(random_accuracy(load_stats(stats), 500), tables, max_exits=2)
    result["second_precision"] = precision_summary(profiles[1]["context"] or {})
    return result


def table(steps: Sequence[Step], facts: dict[str, Any]) -> str:
    """The steps as a Markdown table, then the facts."""
    lines = [
        "| step | wall (s) | peak RSS of its process (MB) | server peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    for s in steps:
        own = "-" if s.peak_rss_mb is None else f"{s.peak_rss_mb:.0f}"
        srv = "-" if s.server_rss_mb is None else f"{s.server_rss_mb:.0f}"
        lines.append(f"| {s.name} | {s.wall_s:.1f} | {own} | {srv} |")
    total = sum(s.wall_s for s in steps)
    lines.append(f"| **total** | **{total:.1f}** | | |")
    lines.append("")
    lines.append(", ".join(f"{k}: {v}" for k, v in facts.items() if k != "compare"))
    if "compare" in facts:  # its rows are in the JSON
        compare = {k: v for k, v in facts["compare"].items() if k != "rows"}
        lines.append(f"profiles compared: {json.dumps(compare)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="torchvision:deeplabv3_resnet50")
    parser.add_argument("--space", default="full", help="head space (full: 36 heads)")
    parser.add_argument("--size", type=parse_size, default=(512, 512), help="N or HxW")
    parser.add_argument("--images", type=positive_int, default=2, help="calibration images")
    parser.add_argument("--num-classes", type=positive_int, default=19)
    parser.add_argument("--tier", default="quick", help="the agent's measurement tier")
    parser.add_argument("--check", action="store_true", help="export with the parity check")
    parser.add_argument("--budget-ms", type=float, help="also query one budget's model")
    parser.add_argument(
        "--truncation",
        action="store_true",
        help="search the truncated configurations too (the service's default; at the paper's "
        "space 3.1e11 configurations instead of 2.6e9, hours on 2 cores)",
    )
    parser.add_argument(
        "--compare-tier",
        help="after the chain, profile again with this tier (e.g. quick-fixed) as a second "
        "device and compare the two profiles' answers (bench/profile_agreement.py)",
    )
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: temp)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    options = {
        "model": args.model,
        "space": args.space,
        "size": args.size,
        "images": args.images,
        "num_classes": args.num_classes,
        "tier": args.tier,
        "check": args.check,
        "budget_ms": args.budget_ms,
        "truncation": args.truncation,
        "compare_tier": args.compare_tier,
    }
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        steps, facts = chain(args.workdir, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="mess-paper-scale-") as tmp:
            steps, facts = chain(Path(tmp), **options)
    print(table(steps, facts))
    result = {"options": options, "steps": [asdict(s) for s in steps], "facts": facts}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
