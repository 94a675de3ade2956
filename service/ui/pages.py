"""What each dashboard page shows, built from the domains' own service functions.

The routes (:mod:`service.ui.routes`) authorise and render; the functions here gather a
page's data into plain dictionaries for the templates.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy.orm import Session

from mess.bundle import Manifest, head_part, policy_part, segment_part
from mess.search import Configuration as SearchConfiguration
from mess.timings import precision_summary
from service.blobs import BlobStore
from service.configurations import service as configurations
from service.devices import repository as devices_repository
from service.devices.service import get_device
from service.errors import NotFound
from service.jobs import repository as jobs_repository
from service.jobs import service as jobs
from service.profiles import service as profiles
from service.profiles.models import Profile
from service.searches.models import DONE
from service.searches.service import FrontCache
from service.supernets import repository as supernets_repository
from service.supernets import service as supernets
from service.supernets.models import Supernet
from service.ui import queries
from service.verifications import service as verifications

ORIGINAL = {"exits": [], "terminal": "final"}
# what the configuration page shows of a verification, where present (others: every field)
VERIFICATION_COLUMNS = (
    "device",
    "profile_id",
    "predicted_expected_ms",
    "expected_ms",
    "worst_ms",
    "exit_agreement",
    "measured_at",
)


def _supernet_line(row: Supernet) -> dict[str, Any]:
    m = row.manifest
    return {
        **supernets.summary(row).model_dump(),
        "source": (m.get("source") or {}).get("model", ""),
        "input_size": "x".join(str(v) for v in m.get("input_size", [])),
    }


def supernet_lines(session: Session) -> list[dict[str, Any]]:
    """The overview's supernet table."""
    return [_supernet_line(r) for r in supernets_repository.list_supernets(session, 1000, 0)]


def _context_line(profile: Profile | None) -> dict[str, Any]:
    context = (profile.context if profile is not None else None) or {}
    runtime = " ".join(str(context[k]) for k in ("runtime", "runtime_version") if k in context)
    threads = context.get("intra_op_threads", context.get("threads"))
    return {
        "runtime": runtime,
        "providers": ", ".join(context.get("providers") or []),
        "threads": "" if threads is None else str(threads),
    }


# the agent's per-part report and the server's additions: summed up or shown elsewhere
_CONTEXT_REPORTS = frozenset({"p90_ms", "wholes", "precision", "signatures", "speed"})
_CONTEXT_VALUE_CHARS = 120


def context_facts(context: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A profile's context as short (key, text) pairs: the measurement settings as they are,
    the per-part reports summed up (a paper-scale profile reports on 626 parts)."""
    context = context or {}
    facts = []
    for key, value in context.items():
        if key in _CONTEXT_REPORTS:
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            text = ", ".join(map(str, value))  # providers
        else:
            text = json.dumps(value, separators=(",", ":"))
        if len(text) > _CONTEXT_VALUE_CHARS:
            text = text[: _CONTEXT_VALUE_CHARS - 1] + "\u2026"
        facts.append((str(key), text))
    summary = precision_summary(context)
    if "within" in summary:
        facts.append(
            (
                "precision",
                f"{summary['within']} of {summary['timed']} timed within the target; median \u00b1"
                f"{summary['halfwidth_median_pct']:g} %, worst \u00b1"
                f"{summary['halfwidth_max_pct']:g} %",
            )
        )
    elif "halfwidth_median_pct" in summary:
        facts.append(("precision", f"median \u00b1{summary['halfwidth_median_pct']:g} %"))
    if "speed_spread_pct" in summary:
        facts.append(
            (
                "device drift",
                f"{summary['speed_spread_pct']:g} % over {summary['speed_probes']} probes",
            )
        )
    return facts


def live(session: Session, now: dt.datetime) -> dict[str, Any]:
    """The overview's numbers that change: devices and their agents, the queue, searches."""
    agents = queries.live_agents(session, now)
    activity = queries.last_job_activity(session)
    latest = queries.latest_profile_per_device(session)
    names = {r.id: r.name for r in supernets_repository.list_supernets(session, 1000, 0)}
    devices = []
    for d in devices_repository.list_devices(session, 1000, 0):
        profile = latest.get(d.id)
        seen = max(filter(None, (d.last_seen_at, activity.get(d.id))))
        devices.append(
            {
                "name": d.name,
                "agents": agents.get(d.id, []),
                "last_seen": seen,
                **_context_line(profile),
                "profile": None
                if profile is None
                else {
                    "version": profile.version,
                    "supernet": names.get(profile.supernet_id, profile.supernet_id[:12]),
                    "created_at": profile.created_at,
                },
            }
        )
    return {
        "now": now,
        "devices": devices,
        "queue": queries.queue(session),
        "searches": queries.recent_searches(session),
    }


def configuration_label(configuration: dict[str, Any]) -> str:
    """A configuration in one line: ``exit@(pixel,image) -> ... -> terminal``."""
    return str(SearchConfiguration.from_json(configuration))


def supernet_page(
    session: Session, blobs: BlobStore, fronts: FrontCache, supernet_id: str
) -> dict[str, Any]:
    """A supernet and the fronts of every profiled device, as the plot draws them."""
    row = supernets.get_supernet(session, supernet_id)
    manifest = Manifest.model_validate(row.manifest)
    series = []
    for front in queries.device_fronts(session, supernet_id):
        search = front.search
        entry: dict[str, Any] = {
            "device": front.device,
            "profile_version": front.profile.version,
            "status": "not searched" if search is None else search.status,
            "points": [],
            "original": None,
        }
        original_ms = jobs.predicted_path_ms(manifest, front.profile.costs, ORIGINAL)
        if search is not None and search.status == DONE and search.front_sha256:
            loaded = fronts.get(blobs, search.front_sha256)
            entry["points"] = [
                {
                    "x": p["expected_cost"],
                    "y": p["miou"],
                    "label": configuration_label(p["configuration"]),
                }
                for p in loaded.front_2d
            ]
            entry["original"] = {"x": original_ms, "y": loaded.front.reference_miou}
        series.append(entry)
    return {"supernet": _supernet_line(row), "manifest": row.manifest, "series": series}


def configuration_page(session: Session, config_id: str) -> dict[str, Any]:
    """A configuration: its exits with their positions and heads, metrics, verifications."""
    row = configurations.get_configuration(session, config_id)
    read = configurations.read(row, verifications.of_configuration(session, row.id))
    supernet = supernets.get_supernet(session, row.supernet_id)
    exits = {e["id"]: e for e in supernet.manifest.get("exits", [])}
    metrics = dict(row.metrics)
    fractions = list(metrics.get("exit_fractions") or [])
    rules = list(row.configuration.get("exits") or [])
    lines = []
    for i, rule in enumerate(rules):
        meta = exits.get(rule["id"], {})
        lines.append(
            {
                "id": rule["id"],
                "position": meta.get("position", ""),
                "head": meta.get("head", ""),
                "pixel_threshold": rule.get("pixel_threshold"),
                "image_threshold": rule.get("image_threshold"),
                "fraction": fractions[i] if i < len(fractions) else None,
            }
        )
    terminal = str(row.configuration.get("terminal", "final"))
    device = None
    if metrics.get("profile_id") is not None:
        try:
            _, device = profiles.get_profile(session, int(metrics["profile_id"]))
        except NotFound:
            device = None
    measured = read.model_dump().get("verifications") or []
    shown = [c for c in VERIFICATION_COLUMNS if measured and c in measured[0]]
    return {
        "configuration": read,
        "label": configuration_label(row.configuration),
        "supernet": _supernet_line(supernet),
        "exits": lines,
        "terminal": {
            "id": terminal,
            "position": exits.get(terminal, {}).get("position", "final"),
            "head": exits.get(terminal, {}).get("head", "original head"),
            "fraction": fractions[len(rules)] if len(rules) < len(fractions) else None,
        },
        "metrics": metrics,
        "device": device,
        "verifications": measured,
        "verification_columns": (shown or sorted(measured[0])) if measured else [],
    }


def _part_rows(profile: Profile) -> list[dict[str, Any]]:
    costs, context = profile.costs, profile.context or {}
    p90 = context.get("p90_ms") or {}
    rows = []
    for name, ms in costs.get("segments", {}).items():
        rows.append({"kind": "segment", "part": segment_part(name), "ms": ms})
    for name, ms in costs.get("heads", {}).items():
        rows.append({"kind": "head", "part": head_part(name), "ms": ms})
    for name, ms in costs.get("policy", {}).items():
        position = name.split("/", 1)[0]
        rows.append({"kind": "policy", "part": f"{policy_part(position)} ({name})", "ms": ms})
    for r in rows:
        r["p90"] = p90.get(r["part"])
    return rows


def device_page(session: Session, name: str, profile_id: int | None) -> dict[str, Any]:
    """A device: its profile versions, one version's part timings and wholes, its jobs."""
    device = get_device(session, name)
    versions = list(queries.device_profiles(session, name))
    names = {r.id: r.name for r in supernets_repository.list_supernets(session, 1000, 0)}
    selected = None
    if versions:
        by_id = {p.id: p for p, _ in versions}
        if profile_id is not None and profile_id not in by_id:
            raise NotFound(f"device {name!r} has no profile {profile_id}")
        selected = by_id[profile_id] if profile_id is not None else versions[0][0]
    job_rows = jobs_repository.list_jobs(
        session, status=None, supernet_id=None, device_id=device.id, limit=1000, offset=0
    )
    return {
        "device": device,
        "versions": [
            {
                "profile": p,
                "supernet": names.get(p.supernet_id, p.supernet_id[:12]),
                "context": context_facts(p.context),
            }
            for p, _ in versions
        ],
        "selected": selected,
        "parts": _part_rows(selected) if selected is not None else [],
        "wholes": [
            {**w, "label": configuration_label(w["configuration"])}
            for w in ((selected.context or {}).get("wholes") or [] if selected else [])
        ],
        "jobs": [
            {"job": jobs.read(j, n), "supernet": names.get(j.supernet_id, j.supernet_id[:12])}
            for j, n in job_rows
        ],
    }
