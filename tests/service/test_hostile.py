"""Hostile input: the right 4xx with a message, nothing stored, nothing written elsewhere.

One table-driven test per family: bundle archives, device cost tables, search bodies, ids in
paths, integers past 64 bits, NUL bytes, roles, forged tokens. Every case asserts the exact
status and a ``detail`` message, that no row, blob or scratch file was left behind, and that
nothing appeared outside ``MESS_DATA_DIR`` (the test's folder around it, and the system
temporary folder, which is pointed into it). A last test runs such requests with every logger
at DEBUG and looks for the secrets in what was logged.

Cases already covered elsewhere are not repeated: the archive checks one by one against the
library (tests/core/test_bundle.py), upload size limits, a broken ONNX part, malformed
supernet ids and agent uploads (test_supernets.py), NaN and negative ``budget_ms`` and agent
searches (test_searches.py), unknown, revoked and expired tokens on reads and an engineer
creating tokens (test_auth.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import stat
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from service.app import create_app
from service.db import load_models
from service.settings import Settings
from tests.service.conftest import ADMIN, auth
from tests.service.factories import bundle_contents, costs_table, exits, stats_bytes

SHA0 = "0" * 64
# families answered by request validation and authentication alone, before any query with the
# hostile value, run on SQLite only; those whose values reach the database run on both
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# --- the guard: state before and after one hostile request ---------------------------------


@dataclass
class Guard:
    """Snapshots of everything a request could leave behind."""

    tmp_path: Path
    settings: Settings
    engine: Engine
    systmp: Path

    def outside(self) -> set[str]:
        """Every path under the test folder but the data folder, the database folder and
        the redirected system temp folder (those are checked separately)."""
        skip = {self.settings.data_dir, self.tmp_path / "db", self.systmp}
        found: set[str] = set()
        for path in self.tmp_path.rglob("*"):
            if not any(path == s or s in path.parents for s in skip):
                found.add(str(path.relative_to(self.tmp_path)))
        return found

    def state(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = {
                t.name: conn.scalar(select(func.count()).select_from(t))
                for t in load_models().sorted_tables
            }
        data = self.settings.data_dir
        return {
            "rows": rows,
            "blobs": sorted(p.name for p in (data / "blobs").glob("??/??/*")),
            "scratch": sorted(p.name for p in (data / "tmp").glob("*")),
            "outside": self.outside(),
            "systmp": sorted(p.name for p in self.systmp.iterdir()),
        }

    def request(self, client: TestClient, method: str, url: str, **kwargs: Any) -> Any:
        """Send one request and check it changed nothing; return the response."""
        before = self.state()
        r = client.request(method, url, **kwargs)
        after = self.state()
        assert after == before, f"{method} {url} -> {r.status_code} left state behind"
        assert after["systmp"] == [] and after["scratch"] == []
        return r


@pytest.fixture
def guard(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    # anything the service writes through tempfile without a dir= lands where we look
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    engine = create_engine(settings.db_url)
    try:
        yield Guard(tmp_path, settings, engine, systmp)
    finally:
        engine.dispose()


def _expect(r: Any, status: int, fragment: str = "") -> str:
    assert r.status_code == status, r.text[:500]
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    assert fragment in detail, detail
    return detail


# --- bundle archives -----------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(members: list[tuple[str, bytes]], symlinks: tuple[str, ...] = ()) -> bytes:
    """A zip written without checks (hostile names, duplicates, links)."""
    buf = io.BytesIO()
    with (
        warnings.catch_warnings(),  # zipfile warns about duplicate names: they are the point
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        warnings.simplefilter("ignore")
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            kind = stat.S_IFLNK if name in symlinks else stat.S_IFREG
            info.external_attr = (kind | 0o777) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _bundle(
    edit: Callable[[dict[str, Any], dict[str, bytes]], None] | None = None,
    extra: tuple[tuple[str, bytes], ...] = (),
    symlinks: tuple[str, ...] = (),
) -> bytes:
    """The tiny valid bundle after ``edit(manifest, files)`` (digests follow the edit)."""
    manifest, files = bundle_contents()
    if edit is not None:
        edit(manifest, files)
    refs = [*manifest["parts"].values(), manifest["stats"], manifest["costs"]]
    for ref in refs:
        if ref["path"] in files:
            ref["sha256"] = _sha(files[ref["path"]])
    members = [("manifest.json", json.dumps(manifest).encode()), *sorted(files.items())]
    return _zip([*members, *extra], symlinks)


def _set_file(path: str, data: bytes) -> Callable[[dict[str, Any], dict[str, bytes]], None]:
    def edit(_manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        files[path] = data

    return edit


def _patch_sizes(archive: bytes, member: str, size: int) -> bytes:
    """Rewrite the uncompressed size that the local header and the central directory declare
    for ``member`` (the data and its CRC stay as they are)."""
    raw = bytearray(archive)
    name = member.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (at := raw.find(signature, start)) >= 0:
            if raw[at + name_at : at + name_at + len(name)] == name:
                struct.pack_into("<I", raw, at + size_at, size)
            start = at + 4
    return bytes(raw)


def _stats_with_nan() -> bytes:
    with np.load(io.BytesIO(stats_bytes())) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["confidence"][0, 0, 0] = np.nan
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _stats_pickled() -> bytes:
    """A stats file whose ``meta`` is a pickled object array (code execution on load)."""
    with np.load(io.BytesIO(stats_bytes())) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["meta"] = np.array([{"format": "mess-stats"}], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _incompressible_then_zeros(size: int) -> bytes:
    # compresses about 50x: under the zip-bomb ratio, over the member size limit
    rng = np.random.default_rng(0)
    return rng.bytes(size // 50) + b"\0" * (size - size // 50)


def _costs_text(text: str) -> Callable[[dict[str, Any], dict[str, bytes]], None]:
    return _set_file("costs.json", text.encode())


_ONE_MB = 1 << 20  # the test app's MESS_MAX_UPLOAD_MB
_EXIT = exits()[0]["id"]
_COSTS = json.dumps(costs_table())

BUNDLES: list[Any] = [
    pytest.param(
        lambda out: _bundle(extra=((str(out / "evil-absolute"), b"x"),)),
        "absolute paths are not allowed",
        id="absolute-member-into-the-test-folder",
    ),
    pytest.param(
        lambda out: _bundle(extra=(("../../../evil-dotdot", b"x"),)),
        "'..' is not allowed",
        id="dotdot-member",
    ),
    pytest.param(
        lambda out: _bundle(
            lambda m, f: m["parts"]["head/final"].update(path="parts/../../../../evil.onnx")
        ),
        "invalid manifest",
        id="manifest-part-path-with-dotdot",
    ),
    pytest.param(
        lambda out: _bundle(extra=(("link", str(out / "evil-link").encode()),), symlinks=("link",)),
        "is a symbolic link",
        id="symlink-member",
    ),
    pytest.param(
        lambda out: _bundle(_set_file("stats.npz", b"\0" * (4 * _ONE_MB))),
        "zip bomb",
        id="zip-bomb-member-ratio",
    ),
    pytest.param(
        lambda out: _bundle(_set_file("stats.npz", _incompressible_then_zeros(9 * _ONE_MB))),
        "bytes uncompressed, more than",
        id="member-over-the-uncompressed-limit",
    ),
    pytest.param(
        lambda out: _patch_sizes(
            _bundle(_set_file("stats.npz", b"\0" * (4 * _ONE_MB))), "stats.npz", 1000
        ),
        "is corrupt",
        id="declared-size-smaller-than-the-data",
    ),
    pytest.param(
        lambda out: _patch_sizes(_bundle(), "stats.npz", 3 << 30),
        "bytes uncompressed, more than",
        id="declared-size-of-3-GB",
    ),
    pytest.param(
        lambda out: _bundle()[:-100],  # the central directory is at the end
        "not a zip archive",
        id="truncated-zip",
    ),
    pytest.param(
        lambda out: _bundle(extra=(("stats.npz", stats_bytes(num_classes=5)),)),
        "appears twice",
        id="duplicate-member-shadowing-the-stats",
    ),
    pytest.param(
        lambda out: _bundle(
            lambda m, f: f.update({"parts/head__final.onnx": f["parts/head__final.onnx"][:-40]})
        ),
        "part 'head/final' is not a valid ONNX model",
        id="truncated-onnx-part",
    ),
    pytest.param(
        lambda out: _bundle(lambda m, f: f.update({"stats.npz": f["stats.npz"][:300]})),
        "stats:",
        id="truncated-stats-npz",
    ),
    pytest.param(
        lambda out: _bundle(_set_file("stats.npz", _stats_pickled())),
        "stats:",
        id="pickled-stats-npz",
    ),
    pytest.param(
        lambda out: _bundle(_set_file("stats.npz", _stats_with_nan())),
        "is not finite",
        id="stats-with-nan-confidence",
    ),
    pytest.param(
        lambda out: _bundle(_costs_text(_COSTS.replace("0.5", "NaN", 1))),
        "must be finite",
        id="costs-with-nan",
    ),
    pytest.param(
        lambda out: _bundle(_costs_text(_COSTS.replace("0.5", "1" + "0" * 400, 1))),
        "must be finite",
        id="costs-with-a-400-digit-integer",
    ),
    pytest.param(
        lambda out: _bundle(_costs_text("[" * 100_000)),
        "costs.json is not valid JSON",
        id="costs-nested-100k-deep",
    ),
]


@pytest.mark.parametrize(("build", "fragment"), BUNDLES)
def test_hostile_bundle_is_400_and_leaves_nothing(
    client: TestClient,
    tokens: dict[str, str],
    guard: Guard,
    build: Callable[[Path], bytes],
    fragment: str,
) -> None:
    data = build(guard.tmp_path)
    assert len(data) < _ONE_MB  # refused for what it is, not for its size
    r = guard.request(
        client,
        "POST",
        "/v1/supernets",
        files={"bundle": ("x.mess", data, "application/zip")},
        headers=auth(tokens["engineer"]),
    )
    detail = _expect(r, 400, fragment)
    assert detail.startswith("invalid bundle: ")


# --- device cost tables --------------------------------------------------------------------


@pytest.fixture
def stored(client: TestClient, tokens: dict[str, str], bundle_file: Path) -> str:
    """A stored supernet and a registered device ``dev``; returns the supernet id."""
    files = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
    r = client.post("/v1/supernets", files=files, headers=auth(tokens["engineer"]))
    assert r.status_code == 201, r.text
    h = auth(tokens["agent"])
    assert client.post("/v1/devices", json={"name": "dev"}, headers=h).status_code == 201
    return str(r.json()["id"])


def _profile(sid: str, costs: Any = None, **extra: Any) -> dict[str, Any]:
    return {"supernet_id": sid, "device": "dev", "costs": costs or costs_table("ms"), **extra}


def _edit_costs(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    costs = costs_table("ms")
    edit(costs)
    return costs


def _renamed_exit(costs: dict[str, Any]) -> None:
    costs["heads"]["../../etc/passwd"] = costs["heads"].pop(_EXIT)


PROFILE_BODIES: list[Any] = [
    # (raw JSON text of the body, status, fragment); NaN/Infinity are what Python's json emits
    pytest.param(
        lambda sid: json.dumps(
            _profile(sid, _edit_costs(lambda c: c["segments"].update(layer1=float("nan"))))
        ),
        422,
        "must be finite",
        id="nan-segment",
    ),
    pytest.param(
        lambda sid: json.dumps(
            _profile(sid, _edit_costs(lambda c: c["heads"].update(final=float("inf"))))
        ),
        422,
        "must be finite",
        id="infinite-head",
    ),
    pytest.param(
        lambda sid: json.dumps(
            _profile(sid, _edit_costs(lambda c: c["policy"].update({_EXIT: -0.5})))
        ),
        422,
        "must be finite and >= 0",
        id="negative-policy",
    ),
    pytest.param(
        lambda sid: json.dumps(
            _profile(sid, _edit_costs(lambda c: c["segments"].update(final=10**400)))
        ),
        422,
        "must be finite",
        id="400-digit-integer",
    ),
    pytest.param(
        lambda sid: json.dumps(
            _profile(sid, _edit_costs(lambda c: c["heads"].update(final="1.0")))
        ),
        422,
        "must be a number",
        id="cost-as-a-string",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, _edit_costs(lambda c: c.update(head=c.pop("heads"))))),
        422,
        "missing key 'heads'",
        id="wrong-section-name",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, _edit_costs(_renamed_exit))),
        422,
        "costs do not fit the supernet",
        id="part-renamed-path-like",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, context={"threads": float("nan")})),
        422,
        "not plain JSON",
        id="nan-in-the-context",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, raw={"segment/layer1": [float("inf")]})),
        422,
        "raw.segment/layer1.0",
        id="infinite-raw-timing",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, costs=[1, 2])),
        422,
        "body.costs",
        id="costs-not-an-object",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, context={"pad": "x" * (2 << 20)})),
        413,
        "MESS_MAX_UPLOAD_MB",
        id="huge-json",
    ),
    pytest.param(
        lambda sid: json.dumps(_profile(sid, {"x": 0})).replace(
            '{"x": 0}', "[" * 200_000 + "]" * 200_000
        ),
        400,
        "error parsing the body",
        id="json-nested-200k-deep",
    ),
]


@pytest.mark.parametrize(("body", "status", "fragment"), PROFILE_BODIES)
def test_hostile_cost_table_is_refused_and_stores_nothing(
    client: TestClient,
    tokens: dict[str, str],
    stored: str,
    guard: Guard,
    body: Callable[[str], str],
    status: int,
    fragment: str,
) -> None:
    r = guard.request(
        client,
        "POST",
        "/v1/profiles",
        content=body(stored).encode(),
        headers={**auth(tokens["agent"]), "Content-Type": "application/json"},
    )
    _expect(r, status, fragment)


# --- search bodies -------------------------------------------------------------------------

SEARCHES: list[Any] = [
    pytest.param('"budget_ms": Infinity', "body.budget_ms", id="infinite-budget_ms"),
    pytest.param('"budget_ms": -Infinity', "body.budget_ms", id="minus-infinite-budget_ms"),
    pytest.param('"budget_ms": 1e999', "body.budget_ms", id="overflowing-budget_ms"),
    pytest.param('"budget_ms": 0', "body.budget_ms", id="zero-budget_ms"),
    pytest.param('"budget": NaN', "body.budget", id="nan-budget"),
    pytest.param('"budget": -5', "body.budget", id="negative-budget"),
    pytest.param(
        '"budget_ms": 10, "worst_budget_ms": Infinity', "body.worst_budget_ms", id="inf-worst"
    ),
    pytest.param('"budget_ms": 10, "worst_budget": NaN', "body.worst_budget", id="nan-worst"),
    pytest.param('"budget_ms": 10, "max_drop": NaN', "body.max_drop", id="nan-max_drop"),
    pytest.param('"budget_ms": 10, "wait_seconds": Infinity', "body.wait_seconds", id="inf-wait"),
    pytest.param('"budget_ms": 10, "wait_seconds": -1', "body.wait_seconds", id="negative-wait"),
    pytest.param(
        '"budget_ms": 10, "image_thresholds": [0.1, NaN]', "image_thresholds", id="nan-threshold"
    ),
    pytest.param('"budget_ms": 10, "max_exits": -1', "body.max_exits", id="negative-max_exits"),
    pytest.param(
        '"budget_ms": 10, "max_exits": 1' + "0" * 30, "body.max_exits", id="huge-max_exits"
    ),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("fields", "fragment"), SEARCHES)
def test_hostile_search_body_is_422(
    client: TestClient, tokens: dict[str, str], guard: Guard, fields: str, fragment: str
) -> None:
    text = '{"supernet_id": "%s", "device": "dev", "objective": "max-accuracy", %s}'
    r = guard.request(
        client,
        "POST",
        "/v1/search",
        content=(text % (SHA0, fields)).encode(),
        headers={**auth(tokens["engineer"]), "Content-Type": "application/json"},
    )
    _expect(r, 422, fragment)


# --- unknown and path-like ids in paths ----------------------------------------------------

_DOTDOT = "..%2F..%2Fetc%2Fpasswd"
_LONG = 10_000
# per kind of id: (what, id, status); a decoded '/' inside one path segment matches no route
_SHA_IDS = [
    ("unknown", SHA0, 404),
    ("dotdot", _DOTDOT, 404),
    ("nul", "%00", 422),
    ("nul-in-a-digest", SHA0[:-1] + "%00", 422),
    ("very-long", "a" * _LONG, 422),
]
_INT_IDS = [
    ("unknown", "999", 404),
    ("dotdot", _DOTDOT, 404),
    ("nul", "1%00", 422),
    ("very-long", "9" * _LONG, 422),
    ("over-64-bits", "9" * 25, 422),
    ("negative", "-1", 422),
]
_NAME_IDS = [
    ("unknown", "ghost", 404),
    ("dotdot", _DOTDOT, 404),
    ("nul", "dev%00", 422),
    ("very-long", "d" * _LONG, 422),
    ("dotdot-name", "%2E%2E", 422),
]
ID_ROUTES: dict[str, list[tuple[str, str, int]]] = {
    "/v1/supernets/{id}": _SHA_IDS,
    "/v1/supernets/{id}/bundle": _SHA_IDS,
    "/v1/configurations/{id}": _SHA_IDS,
    "/v1/configurations/{id}/model.onnx": _SHA_IDS,
    "/v1/profiles/{id}": _INT_IDS,
    "/v1/profiles/{id}/raw": _INT_IDS,
    "/v1/jobs/{id}": _INT_IDS,
    "/v1/searches/{id}": _INT_IDS,
    "/v1/devices/{id}": _NAME_IDS,
}


@pytest.mark.parametrize("route", list(ID_ROUTES))
def test_unknown_or_path_like_ids_are_4xx(
    client: TestClient, tokens: dict[str, str], guard: Guard, route: str
) -> None:
    for what, ident, status in ID_ROUTES[route]:
        url = route.format(id=ident)
        r = guard.request(client, "GET", url, headers=auth(tokens["engineer"]))
        assert r.status_code == status, f"{what}: {r.text[:300]}"
        assert isinstance(r.json()["detail"], str) and r.json()["detail"], what
        assert "root:" not in r.text  # no file content, whatever the path


PART_NAMES = [
    ("unknown", "head/nope", 404),
    ("dotdot-encoded", _DOTDOT, 404),
    ("dotdot-to-the-database", "head/..%2F..%2F..%2Fmess.db", 404),
    ("absolute", "%2Fetc%2Fpasswd", 404),
    ("longer-than-400", "h" * 401, 422),
]


def test_unknown_or_path_like_part_names_are_4xx(
    client: TestClient, tokens: dict[str, str], stored: str, guard: Guard
) -> None:
    for what, name, status in PART_NAMES:
        url = f"/v1/supernets/{stored}/parts/{name}"
        r = guard.request(client, "GET", url, headers=auth(tokens["agent"]))
        assert r.status_code == status, f"{what}: {r.text[:300]}"
        assert isinstance(r.json()["detail"], str), what
        assert "root:" not in r.text and "SQLite" not in r.text, what


# integers past 64 bits overflowed SQLite's driver (a 500) before the routes bounded them
BIG = 2**63
INTEGERS: list[Any] = [
    pytest.param("POST", "/v1/devices", {"name": "d", "memory": BIG}, id="device-memory"),
    pytest.param("POST", "/v1/devices", {"name": "d", "cores": BIG}, id="device-cores"),
    pytest.param("DELETE", f"/v1/tokens/{BIG}", None, id="token-id"),
    pytest.param("POST", f"/v1/jobs/{BIG}/heartbeat", {"lease_id": "x"}, id="job-id"),
    *(
        pytest.param("GET", f"/v1/{what}?offset={BIG}", None, id=f"{what}-offset")
        for what in ("supernets", "devices", "profiles", "jobs", "tokens")
    ),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("method", "url", "body"), INTEGERS)
def test_integers_past_64_bits_are_422(
    client: TestClient,
    guard: Guard,
    method: str,
    url: str,
    body: dict[str, Any] | None,
) -> None:
    r = guard.request(client, method, url, json=body, headers=auth(ADMIN))
    _expect(r, 422, "less than or equal to")


# --- NUL bytes: SQLite stores them in text, PostgreSQL refuses them ------------------------

NULS: list[Any] = [
    # (method, url, JSON body, status on SQLite, status on PostgreSQL)
    pytest.param("GET", "/v1/supernets?name=%00", None, 200, 422, id="list-filter"),
    pytest.param("GET", "/v1/jobs?device=a%00", None, 404, 422, id="jobs-device-filter"),
    pytest.param("POST", "/v1/devices", {"name": "d2", "cpu": "x\x00"}, 201, 422, id="device-cpu"),
    pytest.param("POST", "/v1/jobs/1/heartbeat", {"lease_id": "\x00"}, 409, 422, id="lease-id"),
    pytest.param(
        "GET", "/v1/supernets/{sid}/parts/head%2Ffinal%00", None, 404, 422, id="part-name"
    ),
]


@pytest.mark.parametrize(("method", "url", "body", "on_sqlite", "on_postgres"), NULS)
def test_nul_bytes_never_make_a_server_error(
    client: TestClient,
    tokens: dict[str, str],
    stored: str,
    guard: Guard,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    on_sqlite: int,
    on_postgres: int,
) -> None:
    sqlite = guard.settings.db_url.startswith("sqlite")
    status = on_sqlite if sqlite else on_postgres
    url = url.format(sid=stored)
    h = auth(tokens["admin"])
    if status >= 400:
        r = guard.request(client, method, url, json=body, headers=h)
    else:
        r = client.request(method, url, json=body, headers=h)
    assert r.status_code == status, r.text[:300]
    if not sqlite:
        _expect(r, 422, "refused by the database: PostgreSQL text fields cannot contain NUL")


# --- roles ---------------------------------------------------------------------------------

ROLES: list[Any] = [
    pytest.param("agent", "GET", "/v1/searches/1", None, "engineer", id="agent-GET-search"),
    pytest.param("agent", "GET", "/v1/tokens", None, "admin", id="agent-GET-tokens"),
    pytest.param("engineer", "GET", "/v1/tokens", None, "admin", id="engineer-GET-tokens"),
    pytest.param(
        "agent",
        "POST",
        "/v1/tokens",
        {"name": "x", "role": "admin"},
        "admin",
        id="agent-POST-admin-token",
    ),
    pytest.param(
        "engineer",
        "POST",
        "/v1/tokens",
        {"name": "x", "role": "admin"},
        "admin",
        id="engineer-POST-admin-token",
    ),
    pytest.param("agent", "DELETE", "/v1/tokens/1", None, "admin", id="agent-DELETE-token"),
    pytest.param("engineer", "DELETE", "/v1/tokens/1", None, "admin", id="engineer-DELETE-token"),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("role", "method", "url", "body", "needed"), ROLES)
def test_wrong_role_is_403(
    client: TestClient,
    tokens: dict[str, str],
    guard: Guard,
    role: str,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    needed: str,
) -> None:
    r = guard.request(client, method, url, json=body, headers=auth(tokens[role]))
    _expect(r, 403, f"needs the {needed} role")


# --- forged, revoked and expired tokens ----------------------------------------------------


def _forged(kind: str, tokens: dict[str, str], client: TestClient) -> dict[str, str]:
    """The Authorization header of a forged (or no longer valid) credential."""
    engineer = tokens["engineer"]
    if kind == "admin-token-minus-one-char":
        return auth(ADMIN[:-1])
    if kind == "admin-token-plus-one-char":
        return auth(ADMIN + "0")
    if kind == "admin-token-other-case":
        return auth(ADMIN.upper())
    if kind == "stored-hash-as-token":
        return auth(hashlib.sha256(engineer.encode()).hexdigest())
    if kind == "basic-scheme":
        return {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()}
    if kind == "empty-bearer":
        return {"Authorization": "Bearer "}
    if kind == "token-in-another-header":
        return {"X-Token": ADMIN}
    if kind == "100-kB-token":
        return auth("mess_" + "A" * 100_000)
    if kind == "latin-1-token":
        return {"Authorization": b"Bearer mess_\xe9\xff"}  # type: ignore[dict-item]
    if kind == "revoked":
        listed = client.get("/v1/tokens", headers=auth(ADMIN)).json()["items"]
        token_id = next(t["id"] for t in listed if t["role"] == "engineer")
        assert client.delete(f"/v1/tokens/{token_id}", headers=auth(ADMIN)).status_code == 200
        return auth(engineer)
    raise AssertionError(kind)


FORGED = [
    "admin-token-minus-one-char",
    "admin-token-plus-one-char",
    "admin-token-other-case",
    "stored-hash-as-token",
    "basic-scheme",
    "empty-bearer",
    "token-in-another-header",
    "100-kB-token",
    "latin-1-token",
    "revoked",
]
# a write route per role level: nothing may be created with a forged credential
WRITES: list[Any] = [
    pytest.param("POST", "/v1/tokens", {"json": {"name": "x", "role": "admin"}}, id="tokens"),
    pytest.param(
        "POST",
        "/v1/supernets",
        {"files": {"bundle": ("b.mess", b"PK\x05\x06" + b"\0" * 18, "application/zip")}},
        id="supernets",
    ),
    pytest.param("POST", "/v1/devices", {"json": {"name": "forged"}}, id="devices"),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("method", "url", "kwargs"), WRITES)
@pytest.mark.parametrize("kind", FORGED)
def test_forged_or_revoked_token_is_401_and_writes_nothing(
    client: TestClient,
    tokens: dict[str, str],
    guard: Guard,
    kind: str,
    method: str,
    url: str,
    kwargs: dict[str, Any],
) -> None:
    headers = _forged(kind, tokens, client)
    r = guard.request(client, method, url, headers=headers, **kwargs)
    detail = _expect(r, 401)
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert ADMIN not in detail and tokens["engineer"] not in detail


def test_expired_admin_token_cannot_create_tokens(
    client: TestClient, guard: Guard, settings: Settings
) -> None:
    from service.auth.models import Token

    r = client.post("/v1/tokens", json={"name": "temp", "role": "admin"}, headers=auth(ADMIN))
    secret = r.json()["token"]
    with guard.engine.begin() as conn:  # expired, without using it first (no cached principal)
        conn.execute(
            Token.__table__.update().values(expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        )
    r = guard.request(
        client, "POST", "/v1/tokens", json={"name": "y", "role": "admin"}, headers=auth(secret)
    )
    _expect(r, 401, "revoked or expired")


# --- no secret in the logs -----------------------------------------------------------------


def test_no_token_or_admin_secret_reaches_the_logs(
    settings: Settings, bundle_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # every logger at DEBUG before the apps start: their engines then log each SQL statement
    # with its parameters, and the service loggers everything they have
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # it sets itself to WARNING on import
    debug = settings.model_copy(update={"log_level": "DEBUG"})
    secrets = {ADMIN}
    with TestClient(create_app(debug)) as client:
        for role in ("engineer", "agent", "engineer"):
            r = client.post("/v1/tokens", json={"name": role, "role": role}, headers=auth(ADMIN))
            late = r.json()["token"]
            secrets.add(late)
        bundle = {"bundle": ("b.mess", bundle_file.read_bytes(), "application/zip")}
        for token in [*secrets, ADMIN + "0", ADMIN[:-1], "mess_forged"]:
            h = auth(token)
            client.get("/v1/supernets", headers=h)
            client.post("/v1/devices", json={"name": "d" + token[-8:]}, headers=h)
            client.post("/v1/profiles", content=b"{broken", headers=h)
            client.post("/v1/supernets", files=bundle, headers=h)
            client.post("/v1/supernets", files={"bundle": ("x", b"PK", "x")}, headers=h)
            client.post("/v1/search", json={"supernet_id": SHA0}, headers=h)
            client.get("/metrics", headers=h)
        listed = client.get("/v1/tokens", headers=auth(ADMIN)).json()["items"]
        for row in listed:
            client.delete(f"/v1/tokens/{row['id']}", headers=auth(ADMIN))
        client.get("/v1/supernets", headers=auth(late))
    # a first start without MESS_ADMIN_TOKEN makes one and logs where it is, not what it is
    unset = debug.model_copy(update={"admin_token": None})
    with TestClient(create_app(unset)):
        secrets.add((unset.data_dir / "admin-token").read_text().strip())
    # the test client's own request log (httpx) is not the service's
    records = [rec for rec in caplog.records if not rec.name.startswith("httpx")]
    names = {rec.name.split(".")[0] for rec in records}
    assert {"service", "sqlalchemy"} <= names, f"too little was logged to prove anything: {names}"
    assert any("admin-token" in rec.getMessage() for rec in records)
    logged = "\n".join(f"{caplog.handler.format(rec)} {rec.args!r}" for rec in records)
    # statement parameters are in the logs (the token hashes are), the tokens are not
    assert hashlib.sha256(late.encode()).hexdigest() in logged
    leaked = [s[:12] + "..." for s in (*secrets, ADMIN + "0", ADMIN[:-1]) if s in logged]
    assert leaked == []
