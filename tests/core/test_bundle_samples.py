"""The optional ``samples.npz`` member: calibration images for verification, validated."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mess.bundle import BundleError, load_samples, read_bundle, samples_bytes, write_bundle
from tests.service.factories import bundle_contents


def with_samples(path: Path, blob: bytes) -> Path:
    manifest, files = bundle_contents()
    files["samples.npz"] = blob
    manifest["samples"] = {"path": "samples.npz", "sha256": hashlib.sha256(blob).hexdigest()}
    write_bundle(path, manifest, files)
    return path


def _images(n: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3, size, size), dtype=np.float32)


def test_a_bundle_carries_its_sample_images(tmp_path: Path) -> None:
    blob = samples_bytes(_images(3), np.array([0, 2, 5]))
    assert blob == samples_bytes(_images(3), np.array([0, 2, 5]))  # deterministic bytes
    (tmp_path / "w").mkdir()
    bundle = read_bundle(with_samples(tmp_path / "b.mess", blob), tmp_path / "w")
    images, indices = load_samples(bundle.files["samples.npz"], (16, 16), 6)
    np.testing.assert_array_equal(images, _images(3))
    assert indices.tolist() == [0, 2, 5]


@pytest.mark.parametrize(
    ("images", "indices", "message"),
    [
        (_images(2, 8), [0, 1], "float32"),
        (_images(2).astype(np.float64), [0, 1], "float32"),
        (_images(2) + 1, [0, 1], r"\[0, 1\]"),
        (_images(2), [0, 6], "past the stats"),
        (_images(2), [1, 1], "distinct"),
        (_images(2), [0], "indices"),
    ],
)
def test_bad_samples_are_refused_on_upload(
    tmp_path: Path, images: np.ndarray, indices: list[int], message: str
) -> None:
    blob = samples_bytes(images, np.array(indices))
    if images.dtype == np.float64:  # samples_bytes casts: write the wrong type by hand
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, array in (("images", images), ("indices", np.array(indices))):
                member = io.BytesIO()
                np.save(member, array)
                zf.writestr(f"{name}.npy", member.getvalue())
        blob = buf.getvalue()
    (tmp_path / "w").mkdir()
    with pytest.raises(BundleError, match=message):
        read_bundle(with_samples(tmp_path / "b.mess", blob), tmp_path / "w")


def test_samples_are_size_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    import mess.bundle

    monkeypatch.setattr(mess.bundle, "SAMPLES_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="more than"):
        load_samples(samples_bytes(_images(2), np.array([0, 1])), (16, 16))
    with pytest.raises(ValueError, match="npz"):
        load_samples(b"not a zip", (16, 16))
