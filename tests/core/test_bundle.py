"""The mess-bundle v1 reader refuses unsafe or inconsistent archives, one clear message each."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mess.bundle import BundleError, BundleLimits, read_bundle, validate_bundle, write_bundle
from tests.service.factories import HEAD, bundle_contents, costs_table, onnx_model, stats_bytes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _raw_zip(path: Path, members: dict[str, bytes], **infos: Any) -> Path:
    """Write a zip without any checks (to build hostile archives)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = infos.get(name, (stat.S_IFREG | 0o644) << 16)
            zf.writestr(info, data)
    return path


def _members(manifest: dict[str, Any], files: dict[str, bytes]) -> dict[str, bytes]:
    return {"manifest.json": json.dumps(manifest).encode(), **files}


def _error(path: Path, **kwargs: Any) -> str:
    with pytest.raises(BundleError) as info:
        validate_bundle(path, **kwargs)
    return str(info.value)


def test_written_bundle_reads_back_with_its_parts(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    digest = write_bundle(tmp_path / "a.mess", manifest, files)
    bundle = read_bundle(tmp_path / "a.mess", tmp_path)
    assert bundle.sha256 == digest == _sha((tmp_path / "a.mess").read_bytes())
    assert bundle.manifest.name == "tiny"
    assert bundle.manifest.source["anything"] == [1, 2]
    for ref in bundle.manifest.parts.values():
        assert bundle.files[ref.path].read_bytes() == files[ref.path]


def test_same_content_gives_the_same_bundle_digest(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    assert write_bundle(tmp_path / "a.mess", manifest, files) == write_bundle(
        tmp_path / "b.mess", manifest, files
    )


def test_members_streamed_from_files_give_the_same_bundle(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    on_disk: dict[str, bytes | Path] = {}
    for i, (member, blob) in enumerate(files.items()):
        (tmp_path / f"m{i}").write_bytes(blob)
        on_disk[member] = tmp_path / f"m{i}"
    assert write_bundle(tmp_path / "a.mess", manifest, files) == write_bundle(
        tmp_path / "b.mess", manifest, on_disk
    )
    member = "parts/segment__final.onnx"
    Path(on_disk[member]).write_bytes(onnx_model("other", "Conv"))
    with pytest.raises(BundleError, match="sha256"):
        write_bundle(tmp_path / "c.mess", manifest, on_disk)
    assert not (tmp_path / "c.mess").exists()
    assert not list(tmp_path.glob(".c.mess.*"))  # nor its temporary file


def test_write_refuses_files_that_do_not_match_the_manifest(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    files["parts/segment__final.onnx"] = onnx_model("other", "Conv")
    with pytest.raises(BundleError, match="sha256"):
        write_bundle(tmp_path / "a.mess", manifest, files)
    assert not (tmp_path / "a.mess").exists()


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("/etc/evil", "absolute"),
        ("../evil", "'..'"),
        ("parts/../../evil", "'..'"),
        ("C:/evil", "absolute"),
    ],
)
def test_unsafe_member_names_are_refused(tmp_path: Path, member: str, reason: str) -> None:
    manifest, files = bundle_contents()
    path = _raw_zip(tmp_path / "x.mess", {**_members(manifest, files), member: b"x"})
    assert reason in _error(path)


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    members = {**_members(manifest, files), "link": b"/etc/passwd"}
    path = _raw_zip(tmp_path / "x.mess", members, link=(stat.S_IFLNK | 0o777) << 16)
    assert "symbolic link" in _error(path)


def test_member_not_in_the_manifest_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    path = _raw_zip(tmp_path / "x.mess", {**_members(manifest, files), "extra.bin": b"x"})
    assert "'extra.bin' is not listed" in _error(path)


def test_missing_part_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    del files["parts/head__final.onnx"]
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "'parts/head__final.onnx' is listed but missing" in _error(path)


def test_part_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    files["parts/segment__final.onnx"] = onnx_model("tampered", "Conv")
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "sha256 mismatch for 'parts/segment__final.onnx'" in _error(path)


def test_invalid_onnx_part_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    broken = b"not an onnx model"
    files["parts/head__final.onnx"] = broken
    manifest["parts"]["head/final"]["sha256"] = _sha(broken)
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "part 'head/final' is not a valid ONNX model" in _error(path)


def test_onnx_part_failing_the_full_check_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    # a Conv whose weight input is never defined: decodes fine, fails the checker
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y])
    bad = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = bad.SerializeToString()
    manifest, files = bundle_contents()
    files["parts/segment__final.onnx"] = data
    manifest["parts"]["segment/final"]["sha256"] = _sha(data)
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "part 'segment/final' is not a valid ONNX model" in _error(path)


def test_unknown_top_level_manifest_field_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    manifest["surprise"] = 1
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "invalid manifest: surprise" in _error(path)


@pytest.mark.parametrize(
    "part",
    ["segment/layer2", "head/final", f"head/layer2/{HEAD}", "upsample/layer2", "policy/layer2"],
)
def test_manifest_missing_a_required_part_is_refused(tmp_path: Path, part: str) -> None:
    """Every part the assembler and the cost table use must be there."""
    manifest, files = bundle_contents()
    assert part in manifest["parts"]
    del files[manifest["parts"].pop(part)["path"]]
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert f"parts missing from the manifest: {part}" in _error(path)


def test_manifest_exit_on_an_unknown_position_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    manifest["exits"][0]["position"] = "layer9"
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "unknown position 'layer9'" in _error(path)


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.mess"
    path.write_bytes(b"hello")
    assert "not a zip archive" in _error(path)


def test_other_format_is_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    manifest["format"] = "something-else"
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "not a mess bundle" in _error(path)


def test_zip_bomb_member_is_refused_by_ratio(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    members = {**_members(manifest, files), "bomb": b"\0" * (4 << 20)}
    path = _raw_zip(tmp_path / "x.mess", members)
    assert "zip bomb" in _error(path)


def test_member_count_total_and_member_size_limits(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "members, more than 3" in _error(path, limits=BundleLimits(max_members=3))
    assert "bytes uncompressed" in _error(path, limits=BundleLimits(max_member_bytes=100))
    assert "bytes uncompressed" in _error(path, limits=BundleLimits(max_total_bytes=1000))
    # an ONNX part is bounded apart (protobuf's 2 GiB), other members are not
    biggest = max(len(b) for m, b in files.items() if m.startswith("parts/"))
    part_limit = BundleLimits(max_part_bytes=biggest - 1)
    assert f"more than {biggest - 1} (the most an ONNX protobuf" in _error(path, limits=part_limit)
    assert max(len(files["stats.npz"]), len(files["costs.json"])) > biggest
    validate_bundle(path, limits=BundleLimits(max_part_bytes=biggest))


def test_stats_with_other_classes_than_the_manifest_are_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    files["stats.npz"] = stats_bytes(num_classes=5)
    manifest["stats"]["sha256"] = _sha(files["stats.npz"])
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "stats are for 5 classes" in _error(path)


def test_stats_with_other_exits_than_the_manifest_are_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    files["stats.npz"] = stats_bytes(exit_list=manifest["exits"][:1])
    manifest["stats"]["sha256"] = _sha(files["stats.npz"])
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert "stats exits differ" in _error(path)


def test_corrupt_stats_are_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    files["stats.npz"] = b"garbage"
    manifest["stats"]["sha256"] = _sha(b"garbage")
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert _error(path).startswith("stats:")


def test_costs_missing_an_exit_are_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    costs = costs_table()
    exit_id = manifest["exits"][1]["id"]
    del costs["heads"][exit_id]
    files["costs.json"] = json.dumps(costs).encode()
    manifest["costs"]["sha256"] = _sha(files["costs.json"])
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert exit_id in _error(path)


def test_costs_of_another_format_are_refused(tmp_path: Path) -> None:
    manifest, files = bundle_contents()
    files["costs.json"] = json.dumps({"format": "nope"}).encode()
    manifest["costs"]["sha256"] = _sha(files["costs.json"])
    path = _raw_zip(tmp_path / "x.mess", _members(manifest, files))
    assert _error(path).startswith("costs:")
