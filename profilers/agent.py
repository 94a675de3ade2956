"""The ``mess-agent`` job loop: register, lease, download, measure, upload, repeat.

Server API (v1) it speaks, all with ``Authorization: Bearer <token>`` (role agent):

- ``POST /v1/devices`` ``{"name", "attributes"}``: register or update this device;
- ``POST /v1/jobs/lease`` ``{"device", "kinds"}``: 200 ``{"job": {...}}`` or 204 when none is
  queued; ``kinds``: profile and verify;
- ``POST /v1/jobs/{id}/heartbeat``: extends the lease; 409 when the lease was lost;
- ``POST /v1/jobs/{id}/timings`` ``{"timings", "context", ...}``: a chunk of part timings while
  a profiling job runs; ``GET`` gives those stored (a resumed job), ``.../timings/discard``
  ``{"reason"}`` drops them (see :mod:`profilers.chunks`);
- ``POST /v1/jobs/{id}/result`` ``{"timings", "context", "wholes"}``: idempotent;
- ``POST /v1/jobs/{id}/verification`` ``{"paths", "context", "images"}``: a verify job's
  result, idempotent;
- ``POST /v1/jobs/{id}/release``: give a job back unfinished (SIGTERM);
- ``POST /v1/jobs/{id}/fail`` ``{"error"}``;
- ``GET /v1/supernets/{id}`` (manifest) and ``GET /v1/supernets/{id}/parts/{name}``;
- ``GET /v1/configurations/{id}/model.onnx`` (a verify job's tailored model).

Network errors and 5xx are retried with exponential backoff, so the agent carries on across a
server restart. A bad token or an unreachable server is one clear line and exit code 2.
"""

from __future__ import annotations

import hashlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mess.fileio import write_bytes_atomic
from profilers.chunks import (
    CHUNK_PARTS,
    CHUNK_SECONDS,
    ChunkUploader,
    context_changes,
    resumed_timings,
)
from profilers.measure import (
    TIERS,
    Timing,
    device_attributes,
    make_session,
    measure_parts,
    measurement_context,
    measurement_report,
    random_inputs,
    time_session,
)
from profilers.stability import EVERY_SECONDS as SPEED_EVERY_SECONDS
from profilers.stability import SpeedProbe
from profilers.verify import measure_paths, run_images

log = logging.getLogger(__name__)
JOB_KINDS = ("profile", "verify")


class AgentError(Exception):
    """Fatal for the agent: bad token, unreachable server, protocol mismatch."""


class TokenRefused(AgentError):
    """401/403: retrying cannot help."""


class ServerUnavailable(AgentError):
    """The server did not answer, or answered 5xx, through every retry (it may be restarting).

    Fatal with ``--once``; the job loop waits and tries again.
    """


class ServerUnreachable(ServerUnavailable):
    """No connection at all through every retry."""


class LeaseLost(Exception):
    """The server gave this job to someone else (our lease expired)."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "mess-agent"


@dataclass
class AgentConfig:
    server: str
    token: str
    name: str
    threads: int = 1
    providers: list[str] | None = None
    tier: str = "quick"
    cache_dir: Path | None = None
    retries: int = 5
    backoff: float = 0.5
    poll_seconds: float = 5.0
    wholes: int = 3  # tailored models measured whole per job
    cold_cache: bool = False  # flush the CPU caches before each timed run of a part
    share: bool = True  # time one part per signature of computation
    chunk_parts: int = CHUNK_PARTS  # upload timings every this many parts (0: at the end)
    chunk_seconds: float = CHUNK_SECONDS  # or every this many seconds
    speed_probe_seconds: float = SPEED_EVERY_SECONDS  # between probes of the device (0: none)


def make_client(config: AgentConfig, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """One client for the agent's lifetime: base URL, token, timeouts, connect retries."""
    return httpx.Client(
        base_url=config.server.rstrip("/"),
        headers={"Authorization": f"Bearer {config.token}", "User-Agent": "mess-agent/1"},
        timeout=httpx.Timeout(30.0, connect=5.0),
        transport=transport or httpx.HTTPTransport(retries=2),
    )


class Agent:
    """Works through profiling jobs for one device name (several agents may share it)."""

    def __init__(self, config: AgentConfig, client: httpx.Client) -> None:
        self.config = config
        self.client = client
        self.cache = config.cache_dir or default_cache_dir()
        self.stopping = threading.Event()
        self.current_job: int | None = None

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send with retries (network errors, 5xx); raise AgentError for 401/403."""
        delay = self.config.backoff
        for attempt in range(self.config.retries + 1):
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.config.retries:
                    reason = exc.__class__.__name__
                    raise ServerUnreachable(
                        f"cannot reach the server at {self.config.server} ({reason})"
                    ) from None
                log.warning("network error on %s %s: %s; retrying", method, url, exc)
            else:
                if response.status_code in (401, 403):
                    detail = _detail(response)
                    raise TokenRefused(
                        f"the server refused the token ({response.status_code}: {detail})"
                    )
                if response.status_code < 500 or attempt == self.config.retries:
                    return response
                log.warning("server error %s on %s %s; retrying", response.status_code, method, url)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def register(self) -> dict[str, Any]:
        attributes = device_attributes() | {"threads": self.config.threads}
        if self.config.providers:
            attributes["providers"] = self.config.providers
        response = self.request(
            "POST", "/v1/devices", json={"name": self.config.name, **attributes}
        )
        _raise_for(response, "register the device")
        return dict(response.json())

    def lease(self) -> dict[str, Any] | None:
        body = {"device": self.config.name, "kinds": list(JOB_KINDS)}
        response = self.request("POST", "/v1/jobs/lease", json=body)
        if response.status_code == 204:
            return None
        _raise_for(response, "lease a job")
        return dict(response.json()["job"])

    # ------------------------------------------------------------------ parts
    def part_bytes(self, supernet_id: str, name: str, sha256: str) -> bytes:
        """A part from the cache (by sha256), else downloaded and verified."""
        path = self.cache / sha256[:2] / sha256
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha256:
                return data
        response = self.request("GET", f"/v1/supernets/{supernet_id}/parts/{name}")
        _raise_for(response, f"download part {name}")
        data = response.content
        if hashlib.sha256(data).hexdigest() != sha256:
            raise AgentError(f"part {name} does not match its sha256")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        return data

    # ------------------------------------------------------------------ jobs
    def process(self, job: dict[str, Any]) -> dict[str, Any]:
        """Measure one job's parts (and a few whole models) and upload the timings."""
        return self._leased(job, "profiling", self._profile)

    def process_verification(self, job: dict[str, Any]) -> dict[str, Any]:
        """Time every exit path of a configuration's tailored model whole; upload the times."""
        return self._leased(job, "verification", self._verify)

    def _leased(
        self,
        job: dict[str, Any],
        kind: str,
        work: Callable[[dict[str, Any], dict[str, str], Callable[[str, Timing], None]], Any],
    ) -> dict[str, Any]:
        """Run ``work(job, lease, check)`` under the job's lease: a heartbeat keeps it, a lost
        lease or a stop request ends the work at the next part (``check``), a stop releases
        the job, and a failed measurement is reported while the agent goes on."""
        job_id = int(job["id"])
        self.current_job = job_id
        lost = threading.Event()
        lease = {"lease_id": str(job["lease_id"])}
        beat = threading.Thread(
            target=self._heartbeat,
            args=(job_id, lease, float(job.get("lease_seconds", 60)), lost),
            daemon=True,
        )
        beat.start()

        def check(name: str, timing: Timing) -> None:
            log.info("%s: median %.3f ms", name, timing.median)
            if lost.is_set():
                raise LeaseLost(job_id)
            if self.stopping.is_set():
                raise InterruptedError

        try:
            return dict(work(job, lease, check))
        except InterruptedError:
            self.request("POST", f"/v1/jobs/{job_id}/release", json=lease)
            raise
        except (AgentError, LeaseLost):
            raise
        except Exception as exc:  # measurement failed: report it, keep the agent alive
            log.exception("%s job %s failed", kind, job_id)
            self.request(
                "POST",
                f"/v1/jobs/{job_id}/fail",
                json={**lease, "error": f"{exc.__class__.__name__}: {exc}"[:2000]},
            )
            return {"failed": str(exc)}
        finally:
            lost.set()  # stops the heartbeat thread
            beat.join(timeout=5)
            self.current_job = None

    def _upload(self, job_id: int, route: str, payload: dict[str, Any], what: str) -> Any:
        response = self.request("POST", f"/v1/jobs/{job_id}/{route}", json=payload)
        if response.status_code == 409:
            raise LeaseLost(job_id)
        _raise_for(response, what)
        return response.json()

    def _profile(
        self, job: dict[str, Any], lease: dict[str, str], check: Callable[[str, Timing], None]
    ) -> dict[str, Any]:
        job_id = int(job["id"])
        response = self.request("GET", f"/v1/supernets/{job['supernet_id']}")
        _raise_for(response, "read the supernet manifest")
        manifest = response.json()
        parts = {
            p["name"]: self.part_bytes(job["supernet_id"], p["name"], p["sha256"])
            for p in manifest["parts"]
        }
        context = measurement_context(
            self.config.threads,
            self.config.providers,
            self.config.tier,
            cold=self.config.cold_cache,
            share=self.config.share,
        )
        done = self._resume(job, lease, context)
        chunks = ChunkUploader(
            lambda body: self._send_chunk(job_id, lease, body),
            context,
            parts=self.config.chunk_parts,
            seconds=self.config.chunk_seconds,
        )

        probe = self._start_probe(job_id)

        def progress(name: str, timing: Timing) -> None:
            nonlocal probe
            chunks.add(timing)
            if self.stopping.is_set():
                chunks.flush()  # keep what was measured for whoever resumes the job
            check(name, timing)
            if probe is not None and not _probed(job_id, probe.maybe):
                probe = None

        timings = measure_parts(
            parts,
            threads=self.config.threads,
            providers=self.config.providers,
            tier=self.config.tier,
            seed=job_id,
            progress=progress,
            cold=self.config.cold_cache,
            share=self.config.share,
            done=done,
        )
        report = measurement_report(timings)
        if probe is not None and (speed := self._speed_report(job_id, probe)) is not None:
            report["speed"] = speed
        wholes = self._measure_wholes(manifest, parts, job.get("configurations") or [])
        payload = {
            **lease,  # every part again: the server checks the chunks agree, and has them all
            "timings": {name: t.samples_ms for name, t in timings.items()},
            "context": context | report,
            "wholes": wholes,
        }
        return dict(self._upload(job_id, "result", payload, "upload the result"))

    def _start_probe(self, job_id: int) -> SpeedProbe | None:
        """The job's speed probe, having probed once; ``None`` when turned off or failing."""
        if self.config.speed_probe_seconds <= 0:
            return None
        try:
            probe = SpeedProbe(
                threads=self.config.threads,
                providers=self.config.providers,
                every_seconds=self.config.speed_probe_seconds,
            )
        except Exception as exc:  # the profile matters more than the probe
            log.warning("job %s: no speed probe (%s)", job_id, exc)
            return None
        return probe if _probed(job_id, probe.probe) else None

    def _speed_report(self, job_id: int, probe: SpeedProbe) -> dict[str, Any] | None:
        """The probe's last reading and report; a warning when the device's speed moved
        more than the tier's target while it was profiled."""
        _probed(job_id, probe.probe)
        speed = probe.report()
        if speed is None:
            return None
        target = TIERS[self.config.tier].get("target")
        spread = speed["spread_pct"]
        if spread is not None and target is not None and spread > 100 * target:
            log.warning(
                "job %s: the device's speed moved %.1f %% while it was profiled (%d probes of "
                "a reference computation); each part is known to +-%g %% within its own runs, "
                "the device's costs only to about that drift",
                job_id,
                spread,
                len(speed["medians_ms"]),
                100 * target,
            )
        return speed

    def _resume(
        self, job: dict[str, Any], lease: dict[str, str], context: dict[str, Any]
    ) -> dict[str, Timing]:
        """The parts an earlier lease of this job timed, when measured under ``context``;
        otherwise they are discarded, with the reason, and the job starts over."""
        resume = job.get("resume")
        if not resume or not resume.get("parts"):
            return {}
        job_id = int(job["id"])
        changes = context_changes(resume.get("context") or {}, context)
        if changes:
            reason = "measured under another context: " + "; ".join(changes)
            log.warning(
                "job %s: %d timed part(s) discarded, %s", job_id, len(resume["parts"]), reason
            )
            self._upload(job_id, "timings/discard", {**lease, "reason": reason[:2000]}, "discard")
            return {}
        response = self.request("GET", f"/v1/jobs/{job_id}/timings")
        _raise_for(response, "read the job's stored timings")
        done = resumed_timings(response.json()["parts"])
        log.warning("job %s: resumed, %d part(s) timed already", job_id, len(done))
        return done

    def _send_chunk(self, job_id: int, lease: dict[str, str], body: dict[str, Any]) -> bool:
        """Upload a chunk of timings; False when the server is unavailable (kept for later)."""
        try:
            response = self.request("POST", f"/v1/jobs/{job_id}/timings", json={**lease, **body})
        except ServerUnavailable as exc:
            log.warning("job %s: chunk kept for later: %s", job_id, exc)
            return False
        if response.status_code == 409:
            raise LeaseLost(job_id)
        if response.status_code in (404, 405):  # a server from before chunks
            raise NotImplementedError(f"the server takes no chunks ({_detail(response)})")
        if response.status_code >= 500:
            log.warning("job %s: chunk kept for later: %s", job_id, _detail(response))
            return False
        if not response.is_success:  # a bad chunk fails the job (reported), not the agent
            raise ValueError(f"the server refused a chunk of timings: {_detail(response)}")
        return True

    def _verify(
        self, job: dict[str, Any], lease: dict[str, str], check: Callable[[str, Timing], None]
    ) -> dict[str, Any]:
        job_id = int(job["id"])
        model = self.tailored_model(str(job["configuration_id"]))
        paths = measure_paths(
            model,
            threads=self.config.threads,
            providers=self.config.providers,
            tier=self.config.tier,
            seed=job_id,
            progress=check,
            fractions=job.get("exit_fractions"),
        )
        images = None
        if job.get("samples"):
            response = self.request("GET", f"/v1/jobs/{job_id}/samples")
            _raise_for(response, "download the sample images")
            images = run_images(
                model,
                response.content,
                threads=self.config.threads,
                providers=self.config.providers,
            )
        payload = {
            **lease,
            "paths": paths,
            "images": images,
            "context": measurement_context(
                self.config.threads, self.config.providers, self.config.tier
            ),
        }
        answer = self._upload(job_id, "verification", payload, "upload the verification")
        return dict(answer["verification"])

    def tailored_model(self, configuration_id: str) -> bytes:
        """The configuration's ``model.onnx`` as the service ships it, checked against its
        ``ETag`` (sha256)."""
        response = self.request("GET", f"/v1/configurations/{configuration_id}/model.onnx")
        _raise_for(response, f"download the model of configuration {configuration_id}")
        data = response.content
        etag = response.headers.get("ETag", "").strip('"')
        if etag and hashlib.sha256(data).hexdigest() != etag:  # fails this job, not the agent
            raise ValueError(f"the model of configuration {configuration_id} fails its ETag")
        return data

    def _heartbeat(
        self, job_id: int, lease: dict[str, str], lease_seconds: float, done: threading.Event
    ) -> None:
        interval = max(lease_seconds / 3, 0.2)
        while not done.wait(interval):
            try:
                response = self.client.post(f"/v1/jobs/{job_id}/heartbeat", json=lease)
            except httpx.TransportError:
                continue  # the server may be restarting; the lease has slack
            if response.status_code == 409:
                log.warning("lease of job %s lost", job_id)
                done.set()
                return

    def _measure_wholes(
        self,
        manifest: dict[str, Any],
        parts: dict[str, bytes],
        configurations: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Assemble and time a few tailored models whole (sum of parts vs whole)."""
        if not configurations:
            return []
        import onnx

        from mess.onnx import PartsIndex, assemble_model

        index = PartsIndex.from_manifest(manifest)
        protos = {name: onnx.load_from_string(data) for name, data in parts.items()}
        results = []
        for config in configurations[: self.config.wholes]:
            model = assemble_model(protos, index, config).SerializeToString()
            session = make_session(
                model, threads=self.config.threads, providers=self.config.providers
            )
            timing = time_session(
                session, random_inputs(session), tier=self.config.tier, name="whole"
            )
            results.append({"configuration": config, "samples_ms": timing.samples_ms})
        return results

    # ------------------------------------------------------------------ loops
    def run(self, *, once: bool = False, progress: Callable[[str], None] | None = None) -> int:
        """Register, then work through jobs. ``once``: stop when the queue is empty.

        Without ``once`` the agent outlives server restarts and outages: an unavailable server
        (no connection, or 5xx through every retry) is waited out, at registration, at lease
        time and mid-job (that job's lease then runs out and the pool re-runs it). A refused
        token or another 4xx is a configuration error and ends the loop.
        """
        while not self._waited_out(self.register, once) and not self.stopping.is_set():
            pass
        done = 0
        while not self.stopping.is_set():
            job = self._waited_out(self.lease, once)
            if job is False:
                continue
            if job is None:
                if once:
                    break
                self.stopping.wait(self.config.poll_seconds)
                continue
            try:
                if job.get("kind", "profile") == "verify":
                    result = self.process_verification(job)
                else:
                    result = self.process(job)
            except LeaseLost:
                log.warning("job %s was re-leased elsewhere; dropping it", job["id"])
                continue
            except InterruptedError:
                break
            except ServerUnavailable as exc:
                if once:
                    raise
                log.warning("job %s abandoned: %s; its lease will run out", job["id"], exc)
                continue
            done += 1
            if progress is not None:
                progress(f"job {job['id']} ({job['supernet_id'][:12]}): {result}")
        return done

    def _waited_out(self, call: Callable[[], Any], once: bool) -> Any:
        """``call()``, or False after waiting ``poll_seconds`` when the server is unavailable."""
        try:
            return call()
        except ServerUnavailable as exc:
            if once:
                raise
            log.warning("%s; waiting %.0f s", exc, self.config.poll_seconds)
            self.stopping.wait(self.config.poll_seconds)
            return False

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish the current part, release the job, exit cleanly."""

        def handler(signum: int, _frame: object) -> None:
            log.warning("signal %s: releasing the current job and stopping", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _probed(job_id: int, probe: Callable[[], object]) -> bool:
    """Run a speed probe; a failing one is logged and reported False, never the job's end."""
    try:
        probe()
    except Exception as exc:  # the profile matters more than the probe
        log.warning("job %s: speed probe stopped (%s)", job_id, exc)
        return False
    return True


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))[:200]
    except ValueError:
        return response.text[:200]


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    if response.status_code >= 500:
        raise ServerUnavailable(
            f"could not {what}: the server answered {response.status_code} "
            f"{_detail(response)} through every retry"
        )
    raise AgentError(f"could not {what}: {response.status_code} {_detail(response)}")
