import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mess.nn import build_model, to_supernet
from mess.nn.export import export_parts
from mess.nn.runtime import infer
from mess.onnx import AssemblyError, PartsIndex, assemble_model

THRESHOLDS = [0.3, 0.5, 0.7]
SIZE = (64, 64)


def _parts_and_index(spec, classes=4):
    torch.manual_seed(0)
    sn = to_supernet(build_model(spec, num_classes=classes), space="tiny").eval()
    parts = {p.name: onnx.load_from_string(p.model) for p in export_parts(sn, SIZE, THRESHOLDS)}
    low = sn.final_head.low_position
    index = PartsIndex(
        positions=[p.name for p in sn.positions],
        exit_positions={e: sn.position_of(e).name for e in sn.early_exit_ids},
        pixel_thresholds=THRESHOLDS,
        num_classes=classes,
        input_size=SIZE,
        low_position=sn.positions[low].name if low is not None else None,
    )
    return sn, parts, index


@pytest.fixture(scope="module")
def resnet():
    return _parts_and_index("torchvision:resnet18")


def _images():
    h, w = SIZE
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    flat = torch.full((3, h, w), 0.5)
    split = torch.zeros(3, h, w)
    split[:, :, w // 2 :] = 1.0
    graded = torch.stack([xx, yy, (xx + yy) / 2])
    noisy = torch.rand(3, h, w, generator=torch.Generator().manual_seed(3))
    images = {"flat": flat, "split": split, "graded": graded, "noisy": noisy}
    from mess.data.synth import SynthConfig, generate

    config = SynthConfig(num_classes=4, height=h, width=w)
    for difficulty in (0.0, 0.5, 1.0):  # mess-synth scenes from easy to hard
        image, _, _ = generate(config, "test", 0, difficulty=difficulty)
        images[f"synth-{difficulty}"] = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return images


def _configs(ids):
    return [
        {"exits": [], "terminal": "final"},
        {"exits": [], "terminal": ids[4]},
        {
            "exits": [{"id": ids[0], "pixel_threshold": 0.3, "image_threshold": 0.5}],
            "terminal": "final",
        },
        {
            "exits": [{"id": ids[1], "pixel_threshold": 0.5, "image_threshold": 0.0}],
            "terminal": "final",
        },
        {
            "exits": [
                {"id": ids[2], "pixel_threshold": 0.7, "image_threshold": 0.95},
                {"id": ids[9], "pixel_threshold": 0.3, "image_threshold": 0.4},
                {"id": ids[15], "pixel_threshold": 0.5, "image_threshold": 0.6},
            ],
            "terminal": "final",
        },
        {
            "exits": [{"id": ids[3], "pixel_threshold": 0.3, "image_threshold": 0.9}],
            "terminal": ids[-1],
        },
    ]


def _check_parity(sn, model, config):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    seen = set()
    for name, image in _images().items():
        logits, exit_index = session.run(None, {"image": image[None].numpy()})
        ref_logits, ref_exit = infer(sn, image, config)
        assert int(exit_index) == ref_exit, name
        ref = ref_logits.numpy()
        assert np.abs(logits - ref).max() <= 1e-4 * np.abs(ref).max(), name
        seen.add(ref_exit)
    return seen


def test_assembled_models_match_the_pytorch_policy(resnet):
    sn, parts, index = resnet
    for config in _configs(sn.early_exit_ids):
        model = assemble_model(parts, index, config)
        _check_parity(sn, model, config)


def test_lraspp_final_head_reads_its_low_level_feature():
    sn, parts, index = _parts_and_index("torchvision:lraspp_mobilenet_v3_large")
    ids = sn.early_exit_ids
    config = {
        "exits": [{"id": ids[0], "pixel_threshold": 0.3, "image_threshold": 1.0}],
        "terminal": "final",
    }
    assert _check_parity(sn, assemble_model(parts, index, config), config) == {1}


def test_model_contract_inputs_outputs_and_metadata(resnet):
    sn, parts, index = resnet
    config = _configs(sn.early_exit_ids)[2]
    model = assemble_model(parts, index, config, metadata={"mess.supernet": "abc"})
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits", "exit"]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["mess.configuration"]) == config
    assert props["mess.supernet"] == "abc"
    assert any(n.op_type == "If" for n in model.graph.node)


def test_a_taken_early_exit_skips_the_rest_of_the_network(resnet, tmp_path):
    sn, parts, index = resnet
    config = {
        "exits": [{"id": sn.early_exit_ids[0], "pixel_threshold": 0.3, "image_threshold": 0.0}],
        "terminal": "final",
    }
    model = assemble_model(parts, index, config)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "prof")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    _, exit_index = session.run(None, {"image": np.random.rand(1, 3, *SIZE).astype(np.float32)})
    assert int(exit_index) == 0
    with open(session.end_profiling()) as f:
        events = json.load(f)
    ran = {e["name"] for e in events if e.get("cat") == "Node"}
    convs = [n for n in ran if "Conv" in n]
    # only segment 0 and the first head (plus its policy/upsample) ran: ResNet-18 layer1.0
    # has 3 convs, the head a handful; the whole network has dozens.
    total_convs = sum(1 for p in parts.values() for n in p.graph.node if n.op_type == "Conv")
    assert 0 < len(convs) < 12 < total_convs


def test_invalid_configurations_are_refused(resnet):
    sn, parts, index = resnet
    ids = sn.early_exit_ids
    with pytest.raises(AssemblyError, match="unknown exit"):
        assemble_model(
            parts,
            index,
            {"exits": [{"id": "layer9.9/x", "pixel_threshold": 0.3, "image_threshold": 0.5}]},
        )
    with pytest.raises(AssemblyError, match="strictly increasing"):
        assemble_model(
            parts,
            index,
            {
                "exits": [
                    {"id": ids[9], "pixel_threshold": 0.3, "image_threshold": 0.5},
                    {"id": ids[1], "pixel_threshold": 0.3, "image_threshold": 0.5},
                ]
            },
        )
    with pytest.raises(AssemblyError, match="not one of the calibrated"):
        assemble_model(
            parts,
            index,
            {"exits": [{"id": ids[0], "pixel_threshold": 0.42, "image_threshold": 0.5}]},
        )


def _graphs(graph, depth=0):
    """``graph`` and every branch under it, with their nesting depth."""
    yield graph, depth
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, depth + 1)


def test_each_graph_holds_the_weights_its_own_nodes_read(resnet):
    sn, parts, index = resnet
    config = _configs(sn.early_exit_ids)[4]  # three exits: If nested three deep
    model = assemble_model(parts, index, config)
    owners = {}
    for graph, _ in _graphs(model.graph):
        for init in graph.initializer:
            assert init.name not in owners, f"{init.name} is held twice"
            owners[init.name] = graph.name
    read_by = {}
    for graph, _ in _graphs(model.graph):
        for node in graph.node:
            for value in node.input:
                if value in owners:
                    read_by.setdefault(value, set()).add(graph.name)
    assert read_by, "the model reads no weights"
    assert all(graphs == {owners[name]} for name, graphs in read_by.items())
    # the main graph and each else branch run layers (then branches only upsample)
    assert {owners[name] for name in read_by} == {
        "mess_tailored",
        "exit0_else",
        "exit1_else",
        "exit2_else",
    }


def test_branch_convolutions_get_the_main_graphs_kernels(resnet, tmp_path):
    """onnxruntime's CPU layout optimisation (NCHWc) reaches the layers behind an exit."""
    sn, parts, index = resnet
    model = assemble_model(parts, index, _configs(sn.early_exit_ids)[4])
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    kinds: dict[int, set[str]] = {}
    for graph, depth in _graphs(optimized.graph):
        for node in graph.node:
            if node.op_type in ("Conv", "FusedConv"):
                kinds.setdefault(min(depth, 1), set()).add(node.domain or "ai.onnx")
    if "com.microsoft.nchwc" not in kinds[0]:
        pytest.skip("this CPU's onnxruntime has no NCHWc kernels")
    assert kinds[1] == {"com.microsoft.nchwc"}
