import copy
import os

import pytest
import torch
from torch.utils.data import TensorDataset

from mess.localhost import free_port
from mess.nn import HeadWidths, build_model, to_supernet
from mess.nn.train import (
    StopTraining,
    TrainConfig,
    candidate_exits,
    lightest_head,
    train_stage1,
    train_stage2,
)

C = 3
SPACE = "crm1-b0-rdi0-fcn,crm1-b1-rdi1-dlv3"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models on a shared 2-core box: one thread avoids oversubscription stalls.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=C)
    return to_supernet(model, space=SPACE, widths=HeadWidths(crm=16, block=8, head=8))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=g)
    # Labels that depend on the image, so the losses have something to learn.
    masks = (images.mean(1) * C).long().clamp(max=C - 1)
    masks[:, :2] = 255
    return TensorDataset(images, masks)


def _config(**kw):
    return TrainConfig(**({"epochs": 1, "batch_size": 4, "progress": False, "device": "cpu"} | kw))


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def _state(sn):
    return {k: v.detach().clone() for k, v in sn.state_dict().items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_default_stage1_candidate_is_the_lightest_head_at_every_position(base):
    assert lightest_head(base) == "crm1-b0-rdi0-fcn"
    sn = to_supernet(
        build_model("torchvision:resnet18", num_classes=C),
        space="crm0-b1-rdi0-fcn,crm1-b2-rdi0-dlv3",
        widths=HeadWidths(crm=16, block=8, head=8),
    )
    sizes = {
        h.id: sum(
            p.numel() for pos in sn.positions for p in sn.exits[str(pos.index)][h.id].parameters()
        )
        for h in sn.heads
    }
    assert lightest_head(sn) == min(sizes, key=sizes.get)
    assert candidate_exits(base) == [f"{p.name}/crm1-b0-rdi0-fcn" for p in base.positions]


def test_stage1_trains_backbone_final_and_exactly_the_sampled_exits(base, data):
    sn = copy.deepcopy(base)
    before = _state(sn)
    config = _config(epochs=2, seed=3)
    train_stage1(sn, data, config=config)
    after = _state(sn)
    assert _changed(before, after, "segments.0.")
    assert _changed(before, after, "segments.7.")
    assert _changed(before, after, "final_head.")
    # Replay the seeded exit sampler: 2 epochs x 2 iterations.
    cands = candidate_exits(base)
    g = torch.Generator().manual_seed(3)
    sampled = {cands[int(torch.randint(len(cands), (1,), generator=g))] for _ in range(4)}
    for eid in base.early_exit_ids:
        pos, head = eid.split("/")
        index = next(p.index for p in base.positions if p.name == pos)
        assert _changed(before, after, f"exits.{index}.{head}.") == (eid in sampled), eid


def test_stage1_joint_trains_every_candidate_exit(base, data):
    sn = copy.deepcopy(base)
    before = _state(sn)
    cands = candidate_exits(base, ["crm1-b1-rdi1-dlv3"])
    train_stage1(sn, data, config=_config(), exits=cands, joint=True)
    after = _state(sn)
    for p in base.positions:
        assert _changed(before, after, f"exits.{p.index}.crm1-b1-rdi1-dlv3.")
        assert not _changed(before, after, f"exits.{p.index}.crm1-b0-rdi0-fcn.")


def test_stage2_freezes_backbone_final_and_bn_stats_and_trains_every_head(base, data):
    sn = copy.deepcopy(base)
    before = _state(sn)
    train_stage2(sn, data, config=_config(), val_set=data)
    after = _state(sn)
    frozen = [k for k in before if not k.startswith("exits.")]
    assert any("running_mean" in k for k in frozen)
    for k in frozen:  # weights and BN buffers, bit for bit
        assert torch.equal(before[k], after[k]), k
    for eid in base.early_exit_ids:
        pos, head = eid.split("/")
        index = next(p.index for p in base.positions if p.name == pos)
        assert _changed(before, after, f"exits.{index}.{head}."), eid


def test_stage2_runs_the_backbone_once_per_batch(base, data):
    sn = copy.deepcopy(base)
    calls = []
    sn.segments[0].register_forward_hook(lambda *_: calls.append(1))
    # Heads in groups of 3 (16 heads: 6 groups) still share one backbone pass per batch.
    train_stage2(sn, data, config=_config(epochs=2), heads_per_step=3)
    assert len(calls) == 2 * (len(data) // 4)


def test_stage2_head_groups_train_like_all_heads_at_once(base, data):
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    train_stage2(a, data, config=_config())
    train_stage2(b, data, config=_config(), heads_per_step=5)
    sa, sb = _state(a), _state(b)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


def _out_of_memory_above(limit, monkeypatch):
    """ExitBank.forward raises CUDA's out-of-memory error for groups over ``limit`` heads."""
    from mess.nn.train.stage2 import ExitBank

    forward, sizes = ExitBank.forward, []

    def tight(self, features, exits, size):
        sizes.append(len(exits))
        if len(exits) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, features, exits, size)

    monkeypatch.setattr(ExitBank, "forward", tight)
    return sizes


def test_stage2_step_out_of_gpu_memory_halves_its_groups_and_trains_the_same(
    base, data, monkeypatch, caplog
):
    reference = copy.deepcopy(base)
    train_stage2(reference, data, config=_config())
    sn = copy.deepcopy(base)
    sizes = _out_of_memory_above(4, monkeypatch)
    with caplog.at_level("WARNING", logger="mess.nn.train.stage2"):
        train_stage2(sn, data, config=_config())
    heads = len(sn.early_exit_ids)  # 16: all at once, then 8, then groups of 4 from then on
    assert sizes == [heads, heads // 2, *[4] * 4, *[4] * 4]
    assert "out of GPU memory with 16 heads per group; 8 from now on" in caplog.text
    # The weights are those of a clean run (the retries changed only the grouping).
    sa, sb = _state(reference), _state(sn)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


def test_a_step_out_of_memory_after_a_group_s_backward_drops_its_partial_gradients(
    base, data, monkeypatch
):
    # Groups of 8: the first group's backward has run when the second runs out of memory.
    # The retry goes on from the failed group: run again, the first 8 heads would learn twice
    # and their BN statistics see the batch twice (what the first version of the retry did).
    from mess.nn.train.stage2 import ExitBank

    reference = copy.deepcopy(base)
    train_stage2(reference, data, config=_config(), heads_per_step=8)
    forward, calls = ExitBank.forward, []

    def second_group_fails_once(self, features, exits, size):
        calls.append(len(exits))
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, features, exits, size)

    monkeypatch.setattr(ExitBank, "forward", second_group_fails_once)
    sn = copy.deepcopy(base)
    train_stage2(sn, data, config=_config(), heads_per_step=8)
    assert calls[:6] == [8, 8, 4, 4, 4, 4]
    sa, sb = _state(reference), _state(sn)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


def test_stage2_out_of_gpu_memory_with_one_head_per_group_is_raised(base, data, monkeypatch):
    _out_of_memory_above(0, monkeypatch)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        train_stage2(copy.deepcopy(base), data, config=_config())


def test_persistent_workers_see_each_epoch_and_train_as_the_main_process_does():
    from mess.data import build_dataset

    augmented = build_dataset("synth:4", "train", size=(32, 32), train=True, length=8)
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=4)
    four = to_supernet(model, space=SPACE, widths=HeadWidths(crm=16, block=8, head=8))
    runs = []
    for workers in (0, 2):
        sn = copy.deepcopy(four)
        train_stage1(sn, augmented, config=_config(epochs=2, workers=workers))
        runs.append(_state(sn))
    _assert_same_state(*runs)


def test_each_epoch_reads_its_samples_with_that_epoch_set(base, data):
    class Spy(torch.utils.data.Dataset):
        def __init__(self):
            self.epoch, self.seen = 0, []

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return len(data)

        def __getitem__(self, index):
            self.seen.append(self.epoch)
            return data[index]

    spy = Spy()
    train_stage1(copy.deepcopy(base), spy, config=_config(epochs=2))
    assert spy.seen == [0] * len(data) + [1] * len(data)


def test_the_epoch_travels_with_each_index_to_the_data_set():
    from mess.data import build_dataset
    from mess.nn.train.loaders import AtEpoch, EpochSampler

    augmented = build_dataset("synth:4", "train", size=(32, 32), train=True, length=4)
    at = AtEpoch(augmented)
    first, again, second = at[(0, 1)][0], at[(0, 1)][0], at[(1, 1)][0]
    assert torch.equal(first, again) and not torch.equal(first, second)
    sampler = EpochSampler(torch.utils.data.DistributedSampler(at, num_replicas=1, rank=0))
    sampler.set_epoch(3)
    pairs = list(sampler)
    assert len(pairs) == len(sampler) == 4 and {e for e, _ in pairs} == {3}
    assert sorted(i for _, i in pairs) == [0, 1, 2, 3]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(base, data):
    runs = []
    for seed in (5, 5, 6):
        sn = copy.deepcopy(base)
        train_stage1(sn, data, config=_config(seed=seed))
        runs.append(_state(sn))
    _assert_same_state(runs[0], runs[1])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(base, data, tmp_path, stage):
    train = train_stage1 if stage == "stage1" else train_stage2
    config = _config(epochs=3, seed=2)
    full = copy.deepcopy(base)
    train(full, data, config=config, checkpoint=tmp_path / "full.ckpt")

    def stop_after_first(record):
        if record.epoch == 1:
            raise StopTraining

    ckpt = tmp_path / "cut.ckpt"
    with pytest.raises(StopTraining):
        train(
            copy.deepcopy(base), data, config=config, checkpoint=ckpt, on_epoch_end=stop_after_first
        )
    torch.manual_seed(1234)  # the resumed run must not depend on the caller's RNG state
    resumed = copy.deepcopy(base)
    history = train(resumed, data, config=config, checkpoint=ckpt, resume=True)
    assert [r.epoch for r in history] == [1, 2, 3]
    _assert_same_state(_state(full), _state(resumed))


def test_resume_refuses_a_checkpoint_made_with_other_settings(base, data, tmp_path):
    ckpt = tmp_path / "a.ckpt"
    train_stage1(copy.deepcopy(base), data, config=_config(seed=1), checkpoint=ckpt)
    with pytest.raises(ValueError, match="seed"):
        train_stage1(
            copy.deepcopy(base), data, config=_config(seed=2), checkpoint=ckpt, resume=True
        )
    with pytest.raises(ValueError, match="stage1"):
        train_stage2(
            copy.deepcopy(base), data, config=_config(seed=1), checkpoint=ckpt, resume=True
        )


def test_ddp_world_size_one_matches_a_plain_run(base, data, monkeypatch):
    plain = copy.deepcopy(base)
    train_stage1(plain, data, config=_config(seed=4))
    ddp = copy.deepcopy(base)
    env = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for k, v in (env | {"MASTER_PORT": str(free_port())}).items():
        monkeypatch.setenv(k, v)
    train_stage1(ddp, data, config=_config(seed=4))
    train_stage2(ddp, data, config=_config(seed=4), heads_per_step=4)
    train_stage2(plain, data, config=_config(seed=4), heads_per_step=4)
    assert not torch.distributed.is_initialized()
    sp, sd = _state(plain), _state(ddp)
    for k in sp:
        torch.testing.assert_close(sp[k], sd[k], rtol=1e-5, atol=1e-6)


def _ddp_worker(rank, world, port, base, data, out_dir):
    os.environ.update(
        {
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    sn = copy.deepcopy(base)
    config = _config(seed=7, batch_size=2)
    # Each rank is given its own path: only rank 0's may appear.
    train_stage1(sn, data, config=config, checkpoint=out_dir / f"s1-rank{rank}.ckpt")
    train_stage2(
        sn, data, config=config, checkpoint=out_dir / f"s2-rank{rank}.ckpt", heads_per_step=8
    )
    torch.save({k: p.detach() for k, p in sn.named_parameters()}, out_dir / f"rank{rank}.pt")


@pytest.mark.slow
def test_ddp_two_processes_keep_identical_weights_and_only_rank0_writes(base, data, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, free_port(), base, data, tmp_path), nprocs=2, join=True)
    # Parameters stay in sync (BN running statistics are per process, as in any DDP run).
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    _assert_same_state(r0, r1)
    assert _changed(_state(base), r0, "segments.0.")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rank0.pt",
        "rank1.pt",
        "s1-rank0.ckpt",
        "s2-rank0.ckpt",
    ]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixed_precision_trains_both_stages_and_keeps_stage2_frozen(base, data):
    sn = copy.deepcopy(base)
    config = _config(device="cuda", amp=True)
    history = train_stage1(sn, data, config=config, val_set=data)
    assert torch.isfinite(torch.tensor(history[-1].loss))
    before = _state(sn)
    train_stage2(sn, data, config=config)
    after = _state(sn)
    for k in before:
        if not k.startswith("exits."):
            assert torch.equal(before[k], after[k]), k
    assert _changed(before, after, "exits.0.")
