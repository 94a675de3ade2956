"""The training data loader: a seeded, epoch-aware order over persistent workers.

Every run draws its order from a ``DistributedSampler`` (also in a single process), so the data
order depends only on the seed and the epoch. The epoch travels with each index, so that data
sets in persistent workers apply that epoch's augmentations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mess.nn.train.config import TrainConfig
from mess.nn.train.distributed import Distributed


class EpochSampler(Sampler[tuple[int, int]]):
    """``(epoch, index)`` pairs in ``sampler``'s order, so that the epoch travels with each
    index to the data set's copy in a persistent worker."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class AtEpoch(Dataset):
    """``dataset[(epoch, i)]`` is sample ``i`` with the augmentations of ``epoch``
    (:meth:`mess.data.SegmentationDataset.set_epoch`; data sets without it ignore the epoch)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def train_loader(
    train_set: Dataset, config: TrainConfig, ctx: Distributed, device: torch.device
) -> tuple[DataLoader, EpochSampler]:
    """This process's share of ``train_set`` in batches, and the sampler to set the epoch on.

    Raises:
        ValueError: when the share is smaller than one batch.
    """
    sampler = EpochSampler(
        DistributedSampler(
            train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
        )
    )
    # Worker seeds (only unseeded randomness uses them), drawn once: the workers persist.
    loader_rng = torch.Generator().manual_seed(config.seed * 100_003)
    loader = DataLoader(
        AtEpoch(train_set),
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=True,  # a batch of one breaks BN after ASPP's global pooling
        generator=loader_rng,
        pin_memory=device.type == "cuda",
        # Workers started once, not every epoch (the likely cause of an 8-14 s wait every
        # epoch on a GPU machine, bench/RESULTS.md); the epoch reaches their copies of the
        # data set with each index.
        persistent_workers=config.workers > 0,
    )
    if len(loader) == 0:
        raise ValueError(
            f"training set of {len(train_set)} images (per process) is smaller than one batch "  # type: ignore[arg-type]
            f"of {config.batch_size}"
        )
    return loader, sampler
