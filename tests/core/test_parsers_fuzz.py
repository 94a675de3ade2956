"""Hypothesis on the parsers of untrusted files: only their documented error comes out.

``mess.stats.load_stats`` raises :class:`StatsError`, ``mess.costs.parse_costs`` and
``load_costs`` :class:`CostsError`, ``mess.bundle.read_bundle`` :class:`BundleError`, or they
succeed; any other exception (a ``BadZipFile``, ``OverflowError``, ``RecursionError``,
``KeyError``, ...) would reach the service as a 500. Inputs: random bytes, byte-level
mutations of valid files (flips, cuts, insertions), and structural mutations (a value
anywhere in the JSON replaced by an arbitrary JSON value; arrays of another dtype, shape or
content). Bounded so that the file runs in seconds.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mess.bundle import BundleError, read_bundle
from mess.costs import CostsError, CostTable, load_costs, parse_costs
from mess.stats import Stats, StatsError, load_stats
from tests.service.factories import bundle_contents, costs_table, stats_bytes

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values as json.loads makes them, with the awkward ones made likely: non-finite floats,
# integers beyond float range, deep nesting
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63, -1, 0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@contextmanager
def _file(data: bytes, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mess-fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        yield path


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` after a few flips, cuts, insertions or zeroed runs."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "cut", "truncate", "insert", "zero"]))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            data[at : at + 16] = bytes(len(data[at : at + 16]))
    return bytes(data)


@st.composite
def replaced_somewhere(draw: st.DrawFn, base: Any) -> Any:
    """A deep copy of ``base`` with one value (or the whole) replaced by arbitrary JSON."""
    value = copy.deepcopy(base)
    parent, key = None, None
    node = value
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    new = draw(JSON)
    if parent is None:
        return new
    parent[key] = new
    return value


# --- mess-stats ----------------------------------------------------------------------------

STATS = stats_bytes()


def _load(data: bytes) -> None:
    with _file(data, "stats.npz") as path, suppress(StatsError):
        assert isinstance(load_stats(path), Stats)


@FUZZ
@given(st.binary(max_size=2048))
def test_stats_from_random_bytes(data: bytes) -> None:
    _load(data)


@FUZZ
@given(st.one_of(mutated(STATS), mutated(b"PK\x03\x04" + STATS[4:200])))
def test_stats_from_mutated_bytes(data: bytes) -> None:
    _load(data)


def _arrays() -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(STATS)) as data:
        return {k: data[k] for k in data.files}


_META = json.loads(str(_arrays()["meta"]))


_DTYPES = ["int8", "uint64", "int64", "float16", "float64", "bool", "complex64", "U3", "S3"]


@st.composite
def stats_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """The valid arrays with a few changed: meta JSON, dtypes, shapes, values, presence."""
    arrays = _arrays()
    with warnings.catch_warnings():  # lossy casts are the point here
        warnings.simplefilter("ignore")
        _change_arrays(draw, arrays)
    return arrays


def _change_arrays(draw: st.DrawFn, arrays: dict[str, np.ndarray]) -> None:
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(arrays)))
        change = draw(st.sampled_from(["meta", "dtype", "shape", "values", "drop"]))
        if change == "meta":
            text = json.dumps(draw(replaced_somewhere(_META)))
            arrays["meta"] = np.array(draw(st.sampled_from([text, "[" * 5000, "1" * 5000])))
        elif change == "dtype" and name != "meta":
            dtype = draw(st.sampled_from(_DTYPES))
            with suppress(ValueError, OverflowError, TypeError):  # '0.7' as an integer: skip
                arrays[name] = arrays[name].astype(dtype)
        elif change == "shape":
            shape = draw(st.lists(st.integers(0, 4), max_size=4))
            arrays[name] = np.zeros(shape, dtype=arrays[name].dtype)
        elif change == "values" and arrays[name].size and name != "meta":
            flat = arrays[name].reshape(-1).copy()
            i = draw(st.integers(0, flat.size - 1))
            special = [-1, 2**62, np.nan, np.inf, -np.inf, 1e300]
            value = draw(st.sampled_from(special))
            with suppress(ValueError, OverflowError):  # nan into an integer array: skip
                flat[i] = value
            arrays[name] = flat.reshape(arrays[name].shape)
        elif change == "drop":
            arrays.pop(name)


@FUZZ
@given(stats_arrays())
def test_stats_with_mutated_arrays_and_meta(arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _load(buf.getvalue())


# --- mess-costs ----------------------------------------------------------------------------

COSTS = costs_table("ms")


def _parse(raw: Any) -> None:
    with suppress(CostsError):
        assert isinstance(parse_costs(raw), CostTable)


@FUZZ
@given(JSON)
def test_costs_from_arbitrary_json(raw: Any) -> None:
    _parse(raw)


@FUZZ
@given(replaced_somewhere(COSTS))
def test_costs_with_one_value_replaced(raw: Any) -> None:
    _parse(raw)


@FUZZ
@given(st.one_of(st.binary(max_size=512), mutated(json.dumps(COSTS).encode())))
def test_costs_file_from_mutated_bytes(data: bytes) -> None:
    with _file(data, "costs.json") as path, suppress(CostsError):
        load_costs(path)


# --- mess-bundle ---------------------------------------------------------------------------


def _zip(manifest: Any, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
    return buf.getvalue()


_MANIFEST, _FILES = bundle_contents()
BUNDLE = _zip(_MANIFEST, _FILES)


def _read(data: bytes) -> None:
    with _file(data, "x.mess") as path, tempfile.TemporaryDirectory() as work:
        try:
            bundle = read_bundle(path, work)
        except BundleError:
            return
        assert bundle.sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=1024), mutated(BUNDLE)))
def test_bundle_from_random_or_mutated_bytes(data: bytes) -> None:
    _read(data)


@st.composite
def bundle_with_edited_content(draw: st.DrawFn) -> bytes:
    """A bundle whose manifest, stats or costs had one value replaced (digests kept right)."""
    manifest, files = copy.deepcopy(_MANIFEST), dict(_FILES)
    target = draw(st.sampled_from(["manifest", "costs", "stats"]))
    if target == "manifest":
        return _zip(draw(replaced_somewhere(manifest)), files)
    if target == "costs":
        files["costs.json"] = json.dumps(draw(replaced_somewhere(COSTS))).encode()
    else:
        buf = io.BytesIO()
        np.savez(buf, **draw(stats_arrays()))
        files["stats.npz"] = buf.getvalue()
    ref = manifest[target]
    ref["sha256"] = hashlib.sha256(files[ref["path"]]).hexdigest()
    return _zip(manifest, files)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundle_with_edited_content())
def test_bundle_with_edited_manifest_stats_or_costs(data: bytes) -> None:
    _read(data)
