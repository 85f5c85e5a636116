"""DataLoader and sampler builders, so every package seeds, shuffles and shards data the same way.

Loaders handed to :class:`papers_shared.trainer.Trainer` stay single-process
(``distributed=False``): the trainer shards them across ranks itself. Evaluation or inference
loops that run under ``torchrun`` outside the trainer pass ``distributed=True`` to read only
their rank's share.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sized
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

__all__ = ["build_sampler", "build_dataloader", "seed_worker", "set_loader_epoch"]


def build_sampler(
    dataset: Dataset,
    *,
    shuffle: bool,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
) -> Sampler:
    """The sampler for ``dataset``.

    ``distributed=True`` (a process group must be initialised): a ``DistributedSampler`` over
    the ranks, shuffled from ``seed`` + the epoch set by :func:`set_loader_epoch`. Otherwise a
    ``RandomSampler`` drawing from a generator seeded with ``seed`` (``shuffle``) or a
    ``SequentialSampler``.
    """
    if distributed:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed=True needs an initialised process group (run under torchrun and "
                "call papers_shared.distributed.init_distributed first)"
            )
        return DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if shuffle:
        return RandomSampler(cast(Sized, dataset), generator=torch.Generator().manual_seed(seed))
    return SequentialSampler(cast(Sized, dataset))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed Python and NumPy in each worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A seeded DataLoader (sampler from :func:`build_sampler`, workers seeded by
    :func:`seed_worker`, persistent workers when ``num_workers > 0``).

    ``batch_size`` is per process.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    sampler = build_sampler(
        dataset, shuffle=shuffle, seed=seed, distributed=distributed, drop_last=drop_last
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a ``DistributedSampler`` (or any sampler with ``set_epoch``) which epoch starts, so
    each epoch draws a new order; a no-op for other samplers."""
    sampler = getattr(loader, "sampler", None)
    set_epoch = getattr(sampler, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
