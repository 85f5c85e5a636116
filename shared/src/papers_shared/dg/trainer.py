"""The DomainBed training run: one minibatch per training domain per step, accuracy on every
in/out split at each checkpoint, results appended to ``results.jsonl`` with a ``done`` marker.

Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE > 1``) the same call trains with torch's
``DistributedDataParallel``: every rank draws the same global per-domain batch of ``batch_size``
indices and loads rows ``rank::world_size`` of it, DDP averages the gradients, evaluation is
sharded over the ranks (exact counts, all-reduced) and rank 0 alone writes files.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pickle
import random
import struct
import time
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sized
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from papers_shared.checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint
from papers_shared.dg.algorithms import (
    AMP_DTYPES,
    PRECISIONS,
    Algorithm,
    NonFiniteLossError,
    get_algorithm_class,
    hparam_space,
)
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
from papers_shared.trainer import RunFolderError

__all__ = [
    "TrainConfig",
    "RunFolderError",
    "NonFiniteLossError",
    "train",
    "train_algorithm",
    "accuracy",
    "load_algorithm",
    "read_domainbed_checkpoint",
    "algorithm_from_checkpoint",
    "resolve_model_path",
    "check_replicas_in_sync",
]

logger = logging.getLogger(__name__)


# Settings a resumed run may change: they do not alter what the steps compute.
RESUMABLE_KEYS = frozenset(
    {"steps", "progress", "resume", "overwrite", "device", "eval_batch_size", "max_nonfinite"}
)
RUN_FILES = ("results.jsonl", "done", "model.pkl", "train_state.pt")


@dataclass
class TrainConfig:
    """DomainBed's ``scripts/train.py`` arguments (same names and meaning) plus the run-folder,
    device and precision settings every trainer of the workspace shares.

    Attributes:
        dataset, algorithm, data_dir, test_envs, hparams, hparams_seed, trial_seed, seed,
            steps, checkpoint_freq, holdout_fraction, output_dir, skip_model_save,
            save_model_every_checkpoint, task: as in DomainBed (``steps`` / ``checkpoint_freq``
            None: the dataset's ``N_STEPS`` / ``CHECKPOINT_FREQ``).
        device: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is available, else CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on CUDA with bf16 support, else fp32), ``fp32``, ``bf16``
            (autocast) or ``fp16`` (autocast + loss scaling, CUDA only).
        eval_batch_size: batch size of the accuracy evaluations.
        progress: progress bar (None: when stderr is a terminal).
        overwrite: replace a run already in ``output_dir``.
        resume: continue the run in ``output_dir`` from its last checkpoint (its records are
            kept; settings other than ``steps`` and the ones that do not change results must
            match).
        max_nonfinite: consecutive non-finite losses (each step skipped without touching any
            state) before training stops with :class:`NonFiniteLossError`.
        amp: deprecated spelling of ``precision`` (``none`` = ``fp32``).
    """

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
    device: str | None = "auto"
    eval_batch_size: int = 64
    progress: bool | None = None
    task: str = "domain_generalization"
    precision: str = "auto"
    overwrite: bool = False
    resume: bool = False
    max_nonfinite: int = 3
    amp: str | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping of field names (unknown keys are refused, listing the valid)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
        return cls(**values)

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, Path):
            self.output_dir = str(self.output_dir)
        if not self.test_envs:
            raise ValueError("test_envs must name at least one held-out domain")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.task != "domain_generalization":
            raise ValueError(f"only task='domain_generalization' is supported, got {self.task!r}")
        if self.amp is not None:
            warnings.warn(
                "TrainConfig.amp / --amp is deprecated; use precision / --precision "
                "{auto,fp32,bf16,fp16}",
                DeprecationWarning,
                stacklevel=3,
            )
            if self.amp not in AMP_DTYPES:
                raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {self.amp!r}")
            self.precision = "fp32" if self.amp == "none" else self.amp
            self.amp = None
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: choose one")
        if self.max_nonfinite < 1:
            raise ValueError(f"max_nonfinite must be >= 1, got {self.max_nonfinite}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.checkpoint_freq is not None and self.checkpoint_freq < 1:
            raise ValueError(f"checkpoint_freq must be >= 1, got {self.checkpoint_freq}")


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
    device = None if cfg.device in (None, "auto") else cfg.device
    if world_size <= 1:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
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


def _prepare_run_folder(cfg: TrainConfig, out_dir: Path) -> list[dict[str, Any]]:
    """Apply the run-folder rules; return the records a resumed run keeps (else [])."""
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if out_dir.is_dir():
        existing += [
            p.name
            for pattern in ("model_step*.pkl", "train_state.rank*.pt")
            for p in out_dir.glob(pattern)
        ]
    if not existing:
        return []
    if cfg.overwrite:
        for name in existing:
            (out_dir / name).unlink(missing_ok=True)  # other ranks may remove it first
        logger.info("overwriting the run in %s", out_dir)
        return []
    if not cfg.resume:
        raise RunFolderError(
            f"{out_dir} already holds a run ({', '.join(sorted(existing))}); pass --resume to "
            "continue it or --overwrite to replace it, or choose another --output-dir"
        )
    records = _read_records(out_dir / "results.jsonl")
    if records:
        _check_same_settings(records[-1]["args"], cfg, out_dir)
    return records


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _args_record(cfg: TrainConfig) -> dict[str, Any]:
    args = asdict(cfg)
    args["hparams"] = cfg.hparams if isinstance(cfg.hparams, str) else json.dumps(cfg.hparams or {})
    return args


def _check_same_settings(saved: dict[str, Any], cfg: TrainConfig, out_dir: Path) -> None:
    current = _args_record(cfg)
    differing = sorted(
        key
        for key in set(saved) | set(current)
        if key not in RESUMABLE_KEYS and key != "amp" and saved.get(key) != current.get(key)
    )
    if differing:
        shown = ", ".join(f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in differing)
        raise RunFolderError(
            f"cannot resume {out_dir}: settings differ from the saved run ({shown}); only "
            f"{sorted(RESUMABLE_KEYS - {'resume', 'overwrite'})} may change"
        )


def _optimizers(algorithm: Algorithm) -> dict[str, torch.optim.Optimizer]:
    return {k: v for k, v in vars(algorithm).items() if isinstance(v, torch.optim.Optimizer)}


def _save_train_state(
    path: Path, algorithm: Algorithm, step: int, generator: torch.Generator, nonfinite: int
) -> None:
    """Everything a resumed run needs to continue exactly: weights and buffers, optimizer and
    scaler state, the data-order generator and the global random states."""
    state = {
        "step": step,
        "nonfinite_skipped": nonfinite,
        "model_dict": algorithm.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in _optimizers(algorithm).items()},
        "grad_scaler": algorithm._grad_scaler.state_dict() if algorithm._grad_scaler else None,
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": _numpy_state(),
        "python_rng": repr(random.getstate()),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never a half-written state file


def _numpy_state() -> dict[str, Any]:
    state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    name, keys, pos, has_gauss, cached = state
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _load_train_state(path: Path, algorithm: Algorithm, generator: torch.Generator) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    algorithm.load_state_dict(state["model_dict"])
    for name, optimizer in _optimizers(algorithm).items():
        optimizer.load_state_dict(state["optimizers"][name])
    if state["grad_scaler"] is not None and algorithm._grad_scaler is not None:
        algorithm._grad_scaler.load_state_dict(state["grad_scaler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    np_state = state["numpy_rng"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    random.setstate(ast.literal_eval(state["python_rng"]))
    return state


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

    out_dir = Path(cfg.output_dir) if cfg.output_dir else None
    kept: list[dict[str, Any]] = []
    if out_dir is not None:  # every rank checks (same files), so all raise or none
        kept = _prepare_run_folder(cfg, out_dir)
    if ctx.is_distributed:
        dist.barrier()  # rank 0 may have removed files the others looked at

    dataset = get_dataset(cfg.dataset, cfg.data_dir, cfg.test_envs, hparams)
    in_splits: list[SplitDataset] = []
    out_splits: list[SplitDataset] = []
    for env_index, env in enumerate(dataset.datasets):
        out, in_ = split_dataset(
            env,
            int(len(cast(Sized, env)) * cfg.holdout_fraction),
            seed_hash(cfg.trial_seed, env_index),
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
    precision = algorithm.set_precision(cfg.precision, device)
    if ctx.is_distributed:  # dropout, augmentation, RDS...: an independent stream per rank
        torch.manual_seed(seed_hash(cfg.seed, "rank", ctx.rank))

    steps = cfg.steps or dataset.N_STEPS
    checkpoint_freq = cfg.checkpoint_freq or dataset.CHECKPOINT_FREQ
    steps_per_epoch = min(len(in_splits[i]) / batch_size for i in train_envs)
    state_path = out_dir / _state_name(ctx) if out_dir is not None else None
    start_step, nonfinite_total = 0, 0
    if cfg.resume and state_path is not None and state_path.exists():
        state = _load_train_state(state_path, algorithm, generator)
        start_step, nonfinite_total = int(state["step"]) + 1, int(state["nonfinite_skipped"])
        kept = [r for r in kept if r["step"] <= state["step"]]
        logger.info("resuming %s after step %d", out_dir, state["step"])
    elif kept:
        kept = []  # records without a saved state: the run starts again
    algorithm.distribute(ctx)
    records: list[dict[str, Any]] = list(kept)
    writes = out_dir is not None and ctx.is_main
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if writes and out_dir is not None:
        _rewrite_records(out_dir / "results.jsonl", records)
        if start_step < steps:
            (out_dir / "done").unlink(missing_ok=True)  # running again: not done until the end
    if start_step >= steps:
        logger.info("nothing to do: %s already ran %d of %d steps", out_dir, start_step, steps)
        algorithm.undistribute()
        if ctx.is_distributed:
            dist.barrier()
        return records, algorithm
    logger.info("%s on %s: %d steps, %s, %s", cfg.algorithm, cfg.dataset, steps, device, precision)

    checkpoint_vals: dict[str, list[float]] = defaultdict(list)
    consecutive_nonfinite = 0
    skipped_since_checkpoint = 0
    batches = zip(*train_loaders)
    bar = progress_bar(
        range(start_step, steps),
        enabled=cfg.progress if ctx.is_main else False,
        desc=f"{cfg.algorithm} on {cfg.dataset}",
    )
    for step in bar:
        step_start = time.perf_counter()
        minibatches = [(x.to(device), y.to(device)) for x, y in next(batches)]
        step_vals = algorithm.guarded_update(minibatches)
        if step_vals is None:
            consecutive_nonfinite += 1
            skipped_since_checkpoint += 1
            nonfinite_total += 1
            logger.warning(
                "step %d: non-finite loss, update skipped (%d in a row)",
                step,
                consecutive_nonfinite,
            )
            if consecutive_nonfinite >= cfg.max_nonfinite:
                algorithm.undistribute()
                raise NonFiniteLossError(
                    f"{cfg.algorithm}: the loss was NaN or infinite in {consecutive_nonfinite} "
                    f"consecutive steps (up to step {step}); each was skipped without changing "
                    f"the model. Lower the learning rate, check the data, or allow more with "
                    f"--max-nonfinite (now {cfg.max_nonfinite})"
                )
        else:
            consecutive_nonfinite = 0
            checkpoint_vals["step_time"].append(time.perf_counter() - step_start)
            for key, value in step_vals.items():
                checkpoint_vals[key].append(float(value))
        if step % checkpoint_freq == 0 or step == steps - 1:
            record: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch}
            # means over the steps, then over the ranks (equal slices: the global-batch values)
            record.update(
                {k: all_reduce_mean(float(np.mean(v))) for k, v in checkpoint_vals.items()}
            )
            record["nonfinite_skipped"] = skipped_since_checkpoint
            for name, loader in eval_loaders.items():
                record[f"{name}_acc"] = _sharded_accuracy(algorithm, loader, device, ctx)
            record["mem_gb"] = (
                torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
            )
            record["hparams"] = hparams
            record["args"] = _args_record(cfg)
            records.append(record)
            checkpoint_vals = defaultdict(list)
            skipped_since_checkpoint = 0
            if out_dir is not None:
                if writes:
                    with open(out_dir / "results.jsonl", "a") as handle:
                        handle.write(json.dumps(record, sort_keys=True) + "\n")
                    if cfg.save_model_every_checkpoint and not cfg.skip_model_save:
                        torch.save(
                            _model_checkpoint(cfg, algorithm, dataset),
                            out_dir / f"model_step{step}.pkl",
                        )
                if state_path is not None and (writes or ctx.is_distributed):
                    _save_train_state(state_path, algorithm, step, generator, nonfinite_total)
            bar.set_postfix(loss=f"{record.get('loss', float('nan')):.3f}")
    check_replicas_in_sync(algorithm)
    algorithm.undistribute()
    if writes and out_dir is not None:
        if not cfg.skip_model_save:
            torch.save(_model_checkpoint(cfg, algorithm, dataset), out_dir / "model.pkl")
        (out_dir / "done").write_text("done\n")
    if ctx.is_distributed:
        dist.barrier()  # the other ranks return once rank 0's files are complete
    return records, algorithm


def _state_name(ctx: DistContext) -> str:
    """Per-rank state files under data-parallel training (random streams differ per rank)."""
    return "train_state.pt" if not ctx.is_distributed else f"train_state.rank{ctx.rank}.pt"


def _rewrite_records(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    path.write_text(text)


def _eval_shard(split: SplitDataset, ctx: DistContext) -> SplitDataset:
    """Rows ``rank::world_size`` of an evaluation split (the split itself in one process)."""
    if not ctx.is_distributed:
        return split
    return SplitDataset(split, range(ctx.rank, len(split), ctx.world_size))


def resolve_model_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/model.pkl`` when ``path`` is a run folder."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "model.pkl"
        if not candidate.is_file():
            raise FileNotFoundError(
                f"{path} is a folder without model.pkl (a run folder holds one once training "
                "finished without --skip_model_save)"
            )
        return candidate
    if not path.exists():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    return path


CHECKPOINT_KEYS = ("model_input_shape", "model_num_classes", "model_num_domains", "model_dict")


def read_domainbed_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Read a DomainBed ``model.pkl`` (or the ``model.pkl`` of a run folder) as a dict.

    Read through :func:`papers_shared.checkpoint.read_checkpoint` (no code from the file runs;
    ``trust_checkpoint=True`` allows full unpickling, only for files you trust). Raises
    ``CheckpointError`` (a ``ValueError``) naming what the file is when it is not a DomainBed
    checkpoint.
    """
    path = resolve_model_path(path)
    try:
        checkpoint = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    except CheckpointError:
        raise
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        IndexError,
        UnicodeDecodeError,
        pickle.UnpicklingError,
        struct.error,
        zipfile.BadZipFile,
    ) as err:  # what torch's loader raises on bytes that are not a checkpoint
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (truncated or another format): "
            f"{type(err).__name__}"
        ) from err
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in CHECKPOINT_KEYS):
        found = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else None
        raise CheckpointError(
            f"{path} is not a DomainBed checkpoint: expected keys {list(CHECKPOINT_KEYS)}, found "
            f"{found if found is not None else type(checkpoint).__name__}"
        )
    args = checkpoint.get("args")
    if args is not None and not isinstance(args, dict):
        checkpoint["args"] = dict(vars(args)) if hasattr(args, "__dict__") else {}
    return checkpoint


def load_algorithm(
    path: str | Path,
    algorithm_class: type[Algorithm] | None = None,
    trust_checkpoint: bool = False,
) -> Algorithm:
    """Rebuild an algorithm from a DomainBed ``model.pkl`` or a run folder holding one.

    The class is ``algorithm_class`` or the registered one named in the checkpoint's ``args``.
    """
    return algorithm_from_checkpoint(
        read_domainbed_checkpoint(path, trust_checkpoint), algorithm_class, str(path)
    )


def algorithm_from_checkpoint(
    checkpoint: dict[str, Any],
    algorithm_class: type[Algorithm] | None = None,
    path: str = "checkpoint",
) -> Algorithm:
    """Rebuild an algorithm from a checkpoint dict read by :func:`read_domainbed_checkpoint`."""
    if algorithm_class is None:
        name = (checkpoint.get("args") or {}).get("algorithm")
        if name is None:
            raise ValueError(f"{path} does not name its algorithm (no args.algorithm)")
        algorithm_class = get_algorithm_class(name)
    # the checkpoint holds every weight: never fetch ImageNet weights just to overwrite them
    hparams = {**checkpoint["model_hparams"], "resnet_pretrained": False}
    algorithm = algorithm_class(
        tuple(checkpoint["model_input_shape"]),
        int(checkpoint["model_num_classes"]),
        int(checkpoint["model_num_domains"]),
        hparams,
    )
    load_state_dict_checked(
        algorithm,
        checkpoint["model_dict"],
        allow_missing=algorithm.optional_state_prefixes,
        source=str(path),
    )
    # as recorded (e.g. resnet_pretrained); names the file lacks keep their defaults
    algorithm.hparams = {**algorithm.hparams, **checkpoint["model_hparams"]}
    return algorithm
