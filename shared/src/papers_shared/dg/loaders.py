"""DomainBed's in/out splits and loaders (infinite sampling with replacement for training)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "SplitDataset",
    "split_dataset",
    "class_balanced_weights",
    "InfiniteDataLoader",
    "FastDataLoader",
]


class SplitDataset(Dataset):
    """The items of ``dataset`` at ``keys``."""

    def __init__(self, dataset: Dataset, keys: Sequence[int]) -> None:
        self.dataset = dataset
        self.keys = list(keys)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.keys[index]]

    def __len__(self) -> int:
        return len(self.keys)


def split_dataset(dataset: Dataset, n: int, seed: int = 0) -> tuple[SplitDataset, SplitDataset]:
    """Shuffle indices with ``RandomState(seed)``; the first ``n`` form the first split (DomainBed)."""
    size = len(cast(Sized, dataset))
    if not 0 <= n <= size:
        raise ValueError(f"split size must be within [0, {size}], got {n}")
    keys = list(range(size))
    np.random.RandomState(seed).shuffle(keys)
    return SplitDataset(dataset, keys[:n]), SplitDataset(dataset, keys[n:])


def _labels(dataset: Dataset) -> list[int]:
    return [int(dataset[i][1]) for i in range(len(cast(Sized, dataset)))]


def class_balanced_weights(dataset: Dataset) -> torch.Tensor:
    """Per-item sampling weights ``1 / count(class)`` (DomainBed's ``make_weights_for_balanced_classes``)."""
    labels = _labels(dataset)
    counts = Counter(labels)
    return torch.tensor([1.0 / (counts[y] * len(counts)) for y in labels], dtype=torch.float64)


class _InfiniteSampler(torch.utils.data.Sampler[list[int]]):
    """Endless index batches; each keeps only rows ``rank::world_size`` of the drawn batch."""

    def __init__(
        self, batch_sampler: torch.utils.data.BatchSampler, rank: int = 0, world_size: int = 1
    ) -> None:
        self.batch_sampler = batch_sampler
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            for batch in self.batch_sampler:
                yield batch[self.rank :: self.world_size]


class InfiniteDataLoader:
    """Endless batches sampled with replacement (or by ``weights``), as in DomainBed.

    ``shard=(rank, world_size)`` (data-parallel training): every rank draws the same global batch
    of ``batch_size`` indices (give each the same seeded ``generator``) and loads only its rows
    ``rank::world_size``, so the ranks' batches together are the one-process batch.
    """

    def __init__(
        self,
        dataset: Dataset,
        weights: torch.Tensor | None,
        batch_size: int,
        num_workers: int = 0,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rank, world_size = shard
        if not 0 <= rank < world_size:
            raise ValueError(
                f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
            )
        if batch_size < world_size:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {world_size} processes sharing it"
            )
        n = len(cast(Sized, dataset))
        if n == 0:
            raise ValueError("cannot sample batches from an empty dataset")
        if weights is None:
            weights = torch.ones(n)
        sampler = torch.utils.data.WeightedRandomSampler(
            weights.tolist(),  # the sampler turns them into a float64 tensor either way
            replacement=True,
            num_samples=batch_size,
            generator=generator,
        )
        batch_sampler = torch.utils.data.BatchSampler(
            sampler, batch_size=batch_size, drop_last=True
        )
        self._iterator = iter(
            DataLoader(
                dataset,
                num_workers=num_workers,
                batch_sampler=_InfiniteSampler(batch_sampler, rank, world_size),
                persistent_workers=num_workers > 0,
            )
        )

    def __iter__(self) -> Iterator[Any]:
        while True:
            yield next(self._iterator)

    def __len__(self) -> int:
        raise TypeError("an InfiniteDataLoader has no length")


class FastDataLoader(DataLoader):
    """Sequential, non-shuffled batches for evaluation."""

    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
