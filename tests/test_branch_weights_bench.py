"""``bench.branch_weights``: a dynamic model run with its weights per branch and all in the
main graph gives the same outputs, and the table's JSON line names both timings."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import torch  # noqa: E402

from bench import branch_weights  # noqa: E402
from mess.nn import build_model, to_supernet  # noqa: E402
from mess.nn.export import export_parts  # noqa: E402
from mess.onnx import PartsIndex, assemble_model  # noqa: E402

SIZE = (64, 64)
THRESHOLDS = [0.3, 0.5]


@pytest.fixture(scope="module")
def dynamic_model() -> onnx.ModelProto:
    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=4), space="tiny").eval()
    parts = {p.name: onnx.load_from_string(p.model) for p in export_parts(sn, SIZE, THRESHOLDS)}
    index = PartsIndex(
        positions=[p.name for p in sn.positions],
        exit_positions={e: sn.position_of(e).name for e in sn.early_exit_ids},
        pixel_thresholds=THRESHOLDS,
        num_classes=4,
        input_size=SIZE,
    )
    ids = sn.early_exit_ids
    config = {
        "exits": [
            {"id": ids[0], "pixel_threshold": 0.3, "image_threshold": 0.6},
            {"id": ids[12], "pixel_threshold": 0.5, "image_threshold": 0.5},
        ],
        "terminal": "final",
    }
    return assemble_model(parts, index, config)


def test_moving_the_weights_to_the_main_graph_keeps_the_model(dynamic_model) -> None:
    hoisted = branch_weights.weights_in_main_graph(dynamic_model)
    assert all(not g.initializer for g in branch_weights.subgraphs(hoisted.graph))
    assert any(g.initializer for g in branch_weights.subgraphs(dynamic_model.graph))
    names = {
        i.name
        for g in [dynamic_model.graph, *branch_weights.subgraphs(dynamic_model.graph)]
        for i in g.initializer
    }
    assert {i.name for i in hoisted.graph.initializer} == names


def test_the_benchmark_times_both_layouts(dynamic_model, tmp_path, capsys) -> None:
    (tmp_path / "models").mkdir()
    onnx.save(dynamic_model, str(tmp_path / "models" / "dynamic.onnx"))
    (tmp_path / "headline.json").write_text(json.dumps({"splits": {"test": 6}}))
    assert branch_weights.main(["--workdir", str(tmp_path), "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 6 and result["rounds"] == 1
    (row,) = result["rows"]
    assert sum(row["exit_counts"]) == 6
    assert row["main"] > 0 and row["branch"] > 0
    assert row["ratio"] == pytest.approx(row["main"] / row["branch"])


def test_a_workdir_without_dynamic_models_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "headline.json").write_text(json.dumps({"splits": {"test": 6}}))
    assert branch_weights.main(["--workdir", str(tmp_path)]) == 2
    assert "no dynamic model" in capsys.readouterr().err
