"""The main job, end to end on embedded defaults (``mess demo``).

Stages, each writing into the work folder:

1. build (:mod:`mess.pipeline.build`): convert a small torchvision model into a supernet
   (``supernet-init.pt``), train stage 1 and stage 2 on mess-synth (``stage1.pt``,
   ``supernet.pt``), calibrate on the calibration split (``stats.npz``), export the bundle
   (``supernet.mess``) and assemble the original network (``original.onnx``), each reused
   while its digest in ``digests.json`` matches (:mod:`mess.pipeline.reuse`);
2. start the service on a free loopback port (SQLite, local blobs in ``service/``), push,
   run a local agent that profiles this machine;
3. ask for the best configuration under a budget, download ``model.onnx``;
4. run it and the original network on the test split: ``report.json`` and ``pareto.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from mess.fileio import write_text_atomic
from mess.localhost import free_port
from mess.pipeline import PRESETS, Preset, Stage, build_stages, run_stages
from mess.pipeline.measure import ORIGINAL, load_test_split, measure_in_rounds, write_model

__all__ = ["PRESETS", "Demo", "Preset", "plot_front", "run_demo"]


class Demo:
    """The demo's stages in one work folder; ``timings`` collects the seconds of those run."""

    def __init__(self, workdir: Path, preset: Preset, console: Console) -> None:
        self.dir = workdir
        self.preset = preset
        self.console = console
        self.timings: dict[str, float] = {}

    def path(self, name: str) -> Path:
        return self.dir / name

    # ------------------------------------------------------------------ model stages
    def build(self) -> None:
        """The pipeline's build, and the original network as one ONNX model after it."""

        def original() -> None:
            write_model(
                bundle=self.path("supernet.mess"),
                configuration=ORIGINAL,
                output=self.path("original.onnx"),
            )

        stages = [
            *build_stages(workdir=self.dir, preset=self.preset),
            Stage("original.onnx", (), original),  # quiet: assembled in a second
        ]
        self.timings.update(
            run_stages(
                workdir=self.dir, stages=stages, settings=asdict(self.preset), console=self.console
            )
        )

    # ------------------------------------------------------------------ service stages
    @contextmanager
    def service(self) -> Iterator[tuple[str, str]]:
        import httpx

        data = self.path("service")
        data.mkdir(exist_ok=True)
        token_file = data / "demo-admin-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(24))
            token_file.chmod(0o600)
        admin = token_file.read_text().strip()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MESS_DATA_DIR": str(data),
            "MESS_ADMIN_TOKEN": admin,
            "MESS_LOG_LEVEL": "WARNING",
        }
        log = open(data / "server.log", "ab")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(
            [sys.executable, "-m", "mess", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start; see {data / 'server.log'}")
                time.sleep(0.2)
            self.console.print(f"service on {url} (SQLite and blobs in {data})")
            yield url, admin
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()

    def profile_and_query(self, url: str, admin: str) -> dict[str, Any]:
        from mess.client import MessClient

        p = self.preset
        device = f"{socket.gethostname()}-demo"[:60]
        with MessClient(url, admin) as client:
            pushed = client.push(self.path("supernet.mess"))
            sid = pushed["id"]
            self.console.print(
                f"pushed supernet {sid[:12]} ({'new' if pushed['created'] else 'known'})"
            )
            agent_token = client.create_token("agent", "demo-agent")["token"]
        self.console.rule("[bold]profile this machine (mess-agent)")
        start = time.perf_counter()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "profilers",
                "--server",
                url,
                "--token",
                agent_token,
                "--name",
                device,
                "--once",
                "--tier",
                p.tier,
                "--threads",
                "1",
                "--cache-dir",
                str(self.path("agent-cache")),
            ],
            text=True,
            capture_output=True,
        )
        self.timings["profile"] = time.perf_counter() - start
        if run.returncode != 0:
            raise RuntimeError(f"mess-agent failed: {run.stderr.strip()}")
        self.console.print(run.stdout.strip().splitlines()[-1])
        with MessClient(url, admin) as client:
            profiles = client.get("/v1/profiles", supernet_id=sid, device=device)["items"]
            profile = client.get(f"/v1/profiles/{profiles[0]['id']}")
            costs = profile["costs"]
            original_ms = sum(costs["segments"].values()) + costs["heads"]["final"]
            budget = p.budget_fraction * original_ms
            self.console.rule("[bold]search")
            request = {
                "supernet_id": sid,
                "device": device,
                "objective": "max-accuracy",
                "budget_ms": budget,
            }
            answer = client.search(request)
            client.download(
                f"/v1/configurations/{answer['configuration_id']}/model.onnx",
                self.path("model.onnx"),
            )
        self.console.print(
            f"best under {budget:.2f} ms (= {p.budget_fraction:.0%} of the original "
            f"{original_ms:.2f} ms): {len(answer['configuration']['exits'])} early exit(s), "
            f"predicted mIoU {answer['miou']:.4f} vs {answer['reference_miou']:.4f}, "
            f"expected {answer['expected_cost']:.2f} ms"
        )
        return {
            "supernet_id": sid,
            "device": device,
            "budget_ms": budget,
            "original_predicted_ms": original_ms,
            "answer": answer,
            "profile": {
                "id": profile["id"],
                "version": profile["version"],
                "wholes": profile["context"].get("wholes", []),
            },
        }

    # ------------------------------------------------------------------ measurement
    def measure(self) -> dict[str, Any]:
        p = self.preset
        samples = load_test_split(preset=p)
        self.console.rule("[bold]measure on the test split (onnxruntime, batch 1)")
        models = {"tailored": self.path("model.onnx"), "original": self.path("original.onnx")}
        runs = measure_in_rounds(models=models, samples=samples, num_classes=p.num_classes)
        out = {}
        for name, (evaluation,) in runs.items():
            out[name] = evaluation.summary()
            self.console.print(
                f"{name}: mIoU {out[name]['miou']:.4f}, latency mean "
                f"{out[name]['latency_ms']['mean']:.2f} ms, exits {out[name]['exit_fractions']}"
            )
        return out

    def report(self, service: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
        answer = service["answer"]
        tailored, original = measured["tailored"], measured["original"]
        report = {
            "preset": asdict(self.preset),
            "device": service["device"],
            "supernet_id": service["supernet_id"],
            "budget_ms": service["budget_ms"],
            "configuration_id": answer["configuration_id"],
            "configuration": answer["configuration"],
            "predicted": {
                "split": "calibration",
                "miou": answer["miou"],
                "reference_miou": answer["reference_miou"],
                "expected_ms": answer["expected_cost"],
                "original_ms": service["original_predicted_ms"],
                "exit_fractions": answer["exit_fractions"],
            },
            "measured": {"split": "test", "tailored": tailored, "original": original},
            "speedup": original["latency_ms"]["mean"] / tailored["latency_ms"]["mean"],
            "miou_change_pp": 100 * (tailored["miou"] - original["miou"]),
            "cost_prediction_error": tailored["latency_ms"]["mean"] / answer["expected_cost"] - 1,
            "sum_of_parts_gap": service["profile"]["wholes"],
            "stage_seconds": self.timings,
        }
        write_text_atomic(self.path("report.json"), json.dumps(report, indent=1))
        plot_front(answer, service["original_predicted_ms"], measured, self.path("pareto.png"))
        return report


def plot_front(
    answer: dict[str, Any], original_ms: float, measured: dict[str, Any], output: Path
) -> None:
    """The speed/accuracy front, the chosen point and the original network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = answer["front"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.step(
        [p["expected_cost"] for p in front],
        [100 * p["miou"] for p in front],
        where="post",
        color="tab:blue",
        label="Pareto front (calibration, predicted)",
    )
    ax.scatter(
        [p["expected_cost"] for p in front], [100 * p["miou"] for p in front], s=8, color="tab:blue"
    )
    ax.scatter(
        [answer["expected_cost"]],
        [100 * answer["miou"]],
        s=80,
        color="tab:red",
        zorder=3,
        label="chosen (predicted)",
    )
    ax.scatter(
        [original_ms],
        [100 * answer["reference_miou"]],
        s=80,
        marker="s",
        color="black",
        zorder=3,
        label="original network (predicted)",
    )
    t, o = measured["tailored"], measured["original"]
    ax.scatter(
        [t["latency_ms"]["mean"]],
        [100 * t["miou"]],
        s=80,
        marker="x",
        color="tab:red",
        label="chosen (measured, test)",
    )
    ax.scatter(
        [o["latency_ms"]["mean"]],
        [100 * o["miou"]],
        s=80,
        marker="x",
        color="black",
        label="original (measured, test)",
    )
    ax.axvline(answer["expected_cost"], color="tab:red", lw=0.5, ls=":")
    ax.set_xlabel(f"expected latency ({answer['unit']}) on {answer['device']}")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("MESS: exits, heads and exit policy searched for this device")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)


def run_demo(workdir: Path, *, preset: str = "tiny", console: Console | None = None) -> dict:
    """Run the whole pipeline in ``workdir``; returns the report."""
    console = console or Console()
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir, PRESETS[preset], console)
    start = time.perf_counter()
    demo.build()
    with demo.service() as (url, admin):
        service = demo.profile_and_query(url, admin)
    measured = demo.measure()
    report = demo.report(service, measured)
    console.rule("[bold green]done")
    console.print(
        f"tailored model: mIoU {100 * measured['tailored']['miou']:.2f} vs original "
        f"{100 * measured['original']['miou']:.2f} ({report['miou_change_pp']:+.2f} pp), "
        f"{report['speedup']:.2f}x faster on this machine; "
        f"report.json, pareto.png and model.onnx in {workdir} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return report
