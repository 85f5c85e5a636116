"""The DomainBed training run: one minibatch per training domain per step, accuracy on every
in/out split at each checkpoint, results appended to ``results.jsonl`` with a ``done`` marker.

Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE > 1``) the same call trains with torch's
``DistributedDataParallel``: every rank draws the same global per-domain batch of ``batch_size``
indices and loads rows ``rank::world_size`` of it, DDP averages the gradients, evaluation is
sharded over the ranks (exact counts, all-reduced) and rank 0 alone writes files.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from papers_shared.dg.algorithms import AMP_DTYPES, Algorithm, get_algorithm_class, hparam_space
from papers_shared.dg.datasets import get_dataset
from papers_shared.dg.hparams import resolve_hparams
from papers_shared.dg.loaders import (
    FastDataLoader,
    InfiniteDataLoader,
    SplitDataset,
    class_balanced_weights,
    split_dataset,
)
from papers_shared.distributed import (
    DistContext,
    all_reduce_mean,
    cleanup_distributed,
    init_distributed,
)
from papers_shared.progress import progress_bar
from papers_shared.seeding import seed_hash

__all__ = [
    "TrainConfig",
    "train",
    "train_algorithm",
    "accuracy",
    "load_algorithm",
    "check_replicas_in_sync",
]

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """DomainBed's ``scripts/train.py`` arguments, same names and meaning."""

    dataset: str = "RotatedDigits"
    algorithm: str = "ERM"
    data_dir: str | None = None
    test_envs: list[int] = field(default_factory=lambda: [0])
    hparams: str | dict[str, Any] | None = None
    hparams_seed: int = 0
    trial_seed: int = 0
    seed: int = 0
    steps: int | None = None
    checkpoint_freq: int | None = None
    holdout_fraction: float = 0.2
    output_dir: str | None = "train_output"
    skip_model_save: bool = False
    save_model_every_checkpoint: bool = False
    device: str | None = None
    eval_batch_size: int = 64
    progress: bool | None = None
    task: str = "domain_generalization"
    amp: str = "none"

    def __post_init__(self) -> None:
        if not self.test_envs:
            raise ValueError("test_envs must name at least one held-out domain")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.task != "domain_generalization":
            raise ValueError(f"only task='domain_generalization' is supported, got {self.task!r}")
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {self.amp!r}")


def _count_correct(
    algorithm: Algorithm, loader: FastDataLoader, device: torch.device
) -> tuple[int, int]:
    correct = total = 0
    algorithm.eval()
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = algorithm.predict(x)
            pred = (logits.squeeze(1) > 0).long() if logits.size(1) == 1 else logits.argmax(1)
            correct += (pred == y).sum().item()
            total += len(y)
    algorithm.train()
    return correct, total


def accuracy(algorithm: Algorithm, loader: FastDataLoader, device: torch.device) -> float:
    """Top-1 accuracy of ``algorithm.predict`` (a single logit counts as binary), eval mode."""
    correct, total = _count_correct(algorithm, loader, device)
    return correct / max(total, 1)


def _sharded_accuracy(
    algorithm: Algorithm, loader: FastDataLoader, device: torch.device, ctx: DistContext
) -> float:
    """Accuracy when each rank's ``loader`` holds its share of a split: counts are summed."""
    correct, total = _count_correct(algorithm, loader, device)
    if ctx.is_distributed:
        counts = torch.tensor([correct, total], dtype=torch.float64, device=_comm_device(ctx))
        dist.all_reduce(counts)
        correct, total = int(counts[0]), int(counts[1])
    return correct / max(total, 1)


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _dist_context(cfg: TrainConfig) -> DistContext:
    """One process (no launcher): ``cfg.device`` or CUDA/CPU as before. Under a launcher, or in
    a process group the caller initialised: join / use it (gloo on CPU, NCCL on GPU) on
    ``cuda:<LOCAL_RANK>`` or CPU."""
    initialised = dist.is_available() and dist.is_initialized()
    world_size = dist.get_world_size() if initialised else int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = cfg.device
    if device == "cuda":
        device = f"cuda:{local_rank}"
    if not initialised:
        return init_distributed(device)
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return DistContext(dist.get_rank(), world_size, local_rank, torch.device(device))


def check_replicas_in_sync(algorithm: Algorithm, atol: float = 1e-6) -> None:
    """Raise ``RuntimeError`` naming the parameters that differ from rank 0's (no-op without a
    process group). DDP keeps replicas equal; a difference means a parameter was updated
    outside the DDP-wrapped modules."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    names, params = zip(*algorithm.named_parameters(), strict=True)
    local = torch.cat([p.detach().reshape(-1).double() for p in params])
    reference = local.clone()
    dist.broadcast(reference, src=0)
    differs = (local - reference).abs()
    bad, offset = [], 0
    for name, p in zip(names, params, strict=True):
        if differs[offset : offset + p.numel()].max() > atol:
            bad.append(name)
        offset += p.numel()
    flags = torch.tensor([float(len(bad))], dtype=torch.float64, device=local.device)
    dist.all_reduce(flags)
    if flags.item() > 0:
        raise RuntimeError(
            f"rank {dist.get_rank()}: parameters differ from rank 0's: {bad[:5]} (a parameter "
            "was updated outside the algorithm's ddp_modules())"
            if bad
            else "parameters differ between ranks (see the other ranks' errors)"
        )


def _model_checkpoint(cfg: TrainConfig, algorithm: Algorithm, dataset: Any) -> dict[str, Any]:
    return {
        "args": asdict(cfg),
        "model_input_shape": list(dataset.input_shape),
        "model_num_classes": dataset.num_classes,
        "model_num_domains": len(dataset) - len(cfg.test_envs),
        "model_hparams": algorithm.hparams,
        "model_dict": algorithm.state_dict(),
    }


def train(
    cfg: TrainConfig,
    algorithm_factory: Callable[..., Algorithm] | None = None,
) -> list[dict[str, Any]]:
    """Run one DomainBed training job and return its checkpoint records (see ``train_algorithm``)."""
    return train_algorithm(cfg, algorithm_factory)[0]


def train_algorithm(
    cfg: TrainConfig,
    algorithm_factory: Callable[..., Algorithm] | None = None,
) -> tuple[list[dict[str, Any]], Algorithm]:
    """Run one DomainBed training job; return its checkpoint records and the trained algorithm.

    ``algorithm_factory(input_shape, num_classes, num_domains, hparams)`` defaults to the class
    registered under ``cfg.algorithm``. With ``cfg.output_dir=None`` nothing is written.
    Under a launcher (``WORLD_SIZE > 1``) it trains data-parallel (see the module docstring);
    ``batch_size`` stays the global per-domain batch, and every rank returns the same losses and
    accuracies.
    """
    algorithm_class = get_algorithm_class(cfg.algorithm)
    factory = algorithm_factory or algorithm_class
    hparams = resolve_hparams(
        hparam_space(algorithm_class, cfg.dataset), cfg.hparams_seed, cfg.trial_seed, cfg.hparams
    )
    owns_group = not (dist.is_available() and dist.is_initialized())
    ctx = _dist_context(cfg)
    try:
        return _train(cfg, factory, hparams, ctx)
    finally:
        if owns_group and ctx.is_distributed:
            cleanup_distributed()


def _train(
    cfg: TrainConfig,
    factory: Callable[..., Algorithm],
    hparams: dict[str, Any],
    ctx: DistContext,
) -> tuple[list[dict[str, Any]], Algorithm]:
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = ctx.device

    dataset = get_dataset(cfg.dataset, cfg.data_dir, cfg.test_envs, hparams)
    in_splits, out_splits = [], []
    for env_index, env in enumerate(dataset.datasets):
        out, in_ = split_dataset(
            env, int(len(env) * cfg.holdout_fraction), seed_hash(cfg.trial_seed, env_index)
        )
        in_splits.append(in_)
        out_splits.append(out)

    batch_size = int(hparams["batch_size"])
    if ctx.is_distributed and batch_size % ctx.world_size:
        logger.warning(
            "batch_size %d is not divisible by %d processes: ranks get unequal slices, so the "
            "run is not exactly the one-process run",
            batch_size,
            ctx.world_size,
        )
    generator = torch.Generator().manual_seed(cfg.seed)  # the same global batches on every rank
    train_envs = [i for i in range(len(dataset)) if i not in cfg.test_envs]
    train_loaders = [
        InfiniteDataLoader(
            in_splits[i],
            class_balanced_weights(in_splits[i]) if hparams["class_balanced"] else None,
            batch_size,
            dataset.N_WORKERS,
            generator,
            shard=(ctx.rank, ctx.world_size),
        )
        for i in train_envs
    ]
    eval_loaders = {
        f"env{i}_{name}": FastDataLoader(
            _eval_shard(split, ctx), cfg.eval_batch_size, dataset.N_WORKERS
        )
        for i in range(len(dataset))
        for name, split in (("in", in_splits[i]), ("out", out_splits[i]))
    }
    algorithm = factory(dataset.input_shape, dataset.num_classes, len(train_envs), hparams).to(
        device
    )
    algorithm.set_precision(cfg.amp, device)
    algorithm.distribute(ctx)
    if ctx.is_distributed:  # dropout, augmentation, RDS...: an independent stream per rank
        torch.manual_seed(seed_hash(cfg.seed, "rank", ctx.rank))

    steps = cfg.steps or dataset.N_STEPS
    checkpoint_freq = cfg.checkpoint_freq or dataset.CHECKPOINT_FREQ
    steps_per_epoch = min(len(in_splits[i]) / batch_size for i in train_envs)
    out_dir = Path(cfg.output_dir) if cfg.output_dir and ctx.is_main else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.jsonl").unlink(missing_ok=True)

    records: list[dict[str, Any]] = []
    checkpoint_vals: dict[str, list[float]] = defaultdict(list)
    batches = zip(*train_loaders)
    bar = progress_bar(
        range(steps),
        enabled=cfg.progress if ctx.is_main else False,
        desc=f"{cfg.algorithm} on {cfg.dataset}",
    )
    for step in bar:
        step_start = time.perf_counter()
        minibatches = [(x.to(device), y.to(device)) for x, y in next(batches)]
        step_vals = algorithm.update(minibatches)
        checkpoint_vals["step_time"].append(time.perf_counter() - step_start)
        for key, value in step_vals.items():
            checkpoint_vals[key].append(float(value))
        if step % checkpoint_freq == 0 or step == steps - 1:
            record: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch}
            # means over the steps, then over the ranks (equal slices: the global-batch values)
            record.update({k: all_reduce_mean(np.mean(v)) for k, v in checkpoint_vals.items()})
            for name, loader in eval_loaders.items():
                record[f"{name}_acc"] = _sharded_accuracy(algorithm, loader, device, ctx)
            record["mem_gb"] = (
                torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
            )
            record["hparams"] = hparams
            record["args"] = {
                **asdict(cfg),
                "hparams": cfg.hparams
                if isinstance(cfg.hparams, str)
                else json.dumps(cfg.hparams or {}),
            }
            records.append(record)
            checkpoint_vals = defaultdict(list)
            if out_dir:
                with open(out_dir / "results.jsonl", "a") as handle:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")
                if cfg.save_model_every_checkpoint and not cfg.skip_model_save:
                    torch.save(
                        _model_checkpoint(cfg, algorithm, dataset),
                        out_dir / f"model_step{step}.pkl",
                    )
            bar.set_postfix(loss=f"{record.get('loss', float('nan')):.3f}")
    check_replicas_in_sync(algorithm)
    algorithm.undistribute()
    if out_dir:
        if not cfg.skip_model_save:
            torch.save(_model_checkpoint(cfg, algorithm, dataset), out_dir / "model.pkl")
        (out_dir / "done").write_text("done\n")
    if ctx.is_distributed:
        dist.barrier()  # the other ranks return once rank 0's files are complete
    return records, algorithm


def _eval_shard(split: SplitDataset, ctx: DistContext) -> SplitDataset:
    """Rows ``rank::world_size`` of an evaluation split (the split itself in one process)."""
    if not ctx.is_distributed:
        return split
    return SplitDataset(split, range(ctx.rank, len(split), ctx.world_size))


def load_algorithm(path: str | Path, algorithm_class: type[Algorithm] | None = None) -> Algorithm:
    """Rebuild an algorithm from a DomainBed ``model.pkl`` (``weights_only=True``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model_dict" not in checkpoint:
        raise ValueError(f"{path} is not a DomainBed checkpoint (no 'model_dict')")
    cls = algorithm_class or get_algorithm_class(checkpoint["args"]["algorithm"])
    # the checkpoint holds every weight: never fetch ImageNet weights just to overwrite them
    hparams = {**checkpoint["model_hparams"], "resnet_pretrained": False}
    algorithm = cls(
        tuple(checkpoint["model_input_shape"]),
        checkpoint["model_num_classes"],
        checkpoint["model_num_domains"],
        hparams,
    )
    algorithm.load_state_dict(checkpoint["model_dict"])
    algorithm.hparams = dict(checkpoint["model_hparams"])
    return algorithm
