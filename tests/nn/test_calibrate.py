import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from torchmetrics.classification import MulticlassJaccardIndex

from mess import policy as reference
from mess.nn import build_model, to_supernet
from mess.nn.calibrate import calibrate, confusion_counts
from mess.nn.normalize import NormalizeLayer

C = 4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=C), space="tiny").eval()
    images = torch.rand(9, 3, 48, 64)
    masks = torch.randint(0, C, (9, 48, 64))
    masks[:, :3] = 255
    stats = calibrate(
        sn, TensorDataset(images, masks), batch_size=4, pixel_thresholds=[0.26, 0.28, 0.3]
    )
    return sn, images, masks, stats


def test_stats_arrays_have_the_contract_shapes_and_dtypes(setup):
    sn, images, _, stats = setup
    n, e1 = len(images), len(sn.early_exit_ids) + 1
    assert stats["intersection"].shape == (n, e1, C) and stats["intersection"].dtype == np.int64
    assert stats["predicted"].shape == (n, e1, C)
    assert stats["target"].shape == (n, C)
    assert stats["confidence"].shape == (n, e1, 3) and stats["confidence"].dtype == np.float32
    meta = json.loads(str(stats["meta"]))
    assert meta["format"] == "mess-stats" and meta["version"] == 1
    assert [e["id"] for e in meta["exits"]] == sn.early_exit_ids
    assert meta["num_samples"] == n and meta["supernet"] == sn.digest()
    valid = (setup[2] != 255).sum(dim=(1, 2)).numpy()
    np.testing.assert_array_equal(stats["predicted"].sum(-1), np.repeat(valid[:, None], e1, 1))
    np.testing.assert_array_equal(stats["target"].sum(-1), valid)


def test_miou_from_stats_equals_torchmetrics(setup):
    sn, images, masks, stats = setup
    metric = MulticlassJaccardIndex(num_classes=C, average="none", ignore_index=255)
    eid = sn.early_exit_ids[4]
    k = sn.early_exit_ids.index(eid)
    with torch.no_grad():
        for i in range(0, len(images), 2):  # accumulate over the data set, other batching
            x = NormalizeLayer()(images[i : i + 2])
            metric.update(sn(x, exits=[eid])[eid].argmax(1), masks[i : i + 2])
    expected = metric.compute().numpy()
    inter = stats["intersection"][:, k].sum(0)
    union = stats["predicted"][:, k].sum(0) + stats["target"].sum(0) - inter
    np.testing.assert_allclose(inter / union, expected, rtol=1e-6)


def test_confidence_equals_the_numpy_policy_on_the_exit_logits(setup):
    sn, images, _, stats = setup
    eid = sn.early_exit_ids[2]
    k = sn.early_exit_ids.index(eid)
    with torch.no_grad():
        logits = sn(NormalizeLayer()(images), exits=[eid], upsample=False)[eid].numpy()
    np.testing.assert_array_equal(
        stats["confidence"][:, k], reference.image_scores(logits, [0.26, 0.28, 0.3])
    )


def test_one_backbone_pass_per_batch():
    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=C), space="tiny")
    calls = []
    sn.segments[0].register_forward_hook(lambda *a: calls.append(1))
    data = TensorDataset(torch.rand(5, 3, 32, 32), torch.randint(0, C, (5, 32, 32)))
    calibrate(sn, data, batch_size=2)
    assert len(calls) == 3


def test_confusion_counts_against_a_direct_count():
    pred = torch.tensor([[[0, 1], [2, 2]]])
    target = torch.tensor([[[0, 2], [2, 255]]])
    inter, predicted, tgt = confusion_counts(pred, target, 3)
    assert inter.tolist() == [[1, 0, 1]]
    assert predicted.tolist() == [[1, 1, 1]]
    assert tgt.tolist() == [[1, 0, 2]]


def test_labels_out_of_range_are_refused():
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=C), space="tiny")
    data = TensorDataset(torch.rand(1, 3, 32, 32), torch.full((1, 32, 32), 7))
    with pytest.raises(ValueError, match="labels out of range"):
        calibrate(sn, data)


def test_miou_from_stats_equals_torchmetrics_on_a_trained_supernet():
    """After real stage-1 training on mess-synth, stats-mIoU still equals torchmetrics."""
    from mess.data import build_dataset
    from mess.nn.train import TrainConfig, train_stage1

    torch.manual_seed(0)
    sn = to_supernet(build_model("torchvision:resnet18", num_classes=4), space="tiny")
    train = build_dataset("synth:4", "train", size=(32, 32), length=16, train=True)
    train_stage1(sn, train, config=TrainConfig(epochs=1, batch_size=8, lr=0.05, device="cpu"))
    sn.eval()
    data = build_dataset("synth:4", "calibration", size=(32, 32), length=8)
    stats = calibrate(sn, data, batch_size=4, pixel_thresholds=[0.5])
    for k, eid in ((0, sn.early_exit_ids[0]), (len(sn.early_exit_ids), "final")):
        metric = MulticlassJaccardIndex(num_classes=C, average="none", ignore_index=255)
        with torch.no_grad():
            for image, mask in data:
                logits = sn(NormalizeLayer()(image[None]), exits=[eid])[eid]
                metric.update(logits.argmax(1), mask[None])
        inter = stats["intersection"][:, k].sum(0)
        union = stats["predicted"][:, k].sum(0) + stats["target"].sum(0) - inter
        expected = metric.compute().numpy()
        present = union > 0
        np.testing.assert_allclose(inter[present] / union[present], expected[present], rtol=1e-6)
