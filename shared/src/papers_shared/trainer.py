"""The one training loop of the repository, on Hugging Face ``accelerate``.

A package describes what is specific to its paper in a :class:`TrainTask` (model, optimizer,
scheduler, data, the loss of one batch, evaluation, extra state such as an EMA) and hands it to
:class:`Trainer` with a :class:`TrainerConfig`::

    task = MyTask(cfg)
    result = Trainer(task, TrainerConfig(output_dir="runs/x", epochs=3)).fit()
    result.history[-1]["train_loss"], result.model

The trainer owns everything else, the same way for every package: device and mixed precision
(``auto | fp32 | bf16 | fp16``), DDP under ``torchrun`` / ``accelerate launch`` (gloo on CPU),
gradient accumulation and clipping, the scheduler (stepped once per optimizer step),
checkpoint/resume, logging, and the run-folder rules:

* a folder that already holds a run (``config.json``) is refused unless ``resume`` or ``overwrite``;
* ``resume`` keeps ``history.jsonl``, refuses a config that differs in anything but ``epochs``,
  ``max_steps`` and ``progress`` (naming the keys), continues from the last checkpoint and returns
  ``nothing_to_do=True`` when every epoch is already done;
* a non-finite loss skips the update without touching parameters, buffers (BatchNorm statistics are
  restored), optimizer, scheduler or task state; ``max_nonfinite`` in a row raise
  :class:`NonFiniteLossError`.

Files in the run folder (written by rank 0 only): ``config.json`` (``{"trainer": ..., "task":
...}``), ``history.jsonl`` (one JSON object per epoch), ``metrics.json`` (final), ``checkpoint/``
(accelerate state, task state and counters) and ``model.safetensors`` (the final weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "PRECISIONS",
    "TrainerConfig",
    "TrainTask",
    "StepOutput",
    "TrainResult",
    "Trainer",
    "RunFolderError",
    "NonFiniteLossError",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_RESUMABLE_KEYS = frozenset({"epochs", "max_steps", "progress"})
# where and how the run is launched, not what is trained: never compared on resume
_RUN_ACTION_KEYS = frozenset({"output_dir", "resume", "overwrite"})
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoint"
_STATE_FILE = "trainer_state.json"
_TASK_STATE_FILE = "task_state_{rank}.pt"


class RunFolderError(RuntimeError):
    """The output folder cannot be used as asked (existing run, changed config on resume)."""


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row; the run stops instead of training on garbage."""


@dataclass
class TrainerConfig:
    """How a task is trained: length, precision, accumulation, checkpoints and the run folder."""

    output_dir: str | Path
    """Run folder; receives config.json, history.jsonl, metrics.json, checkpoint/, model.safetensors."""
    epochs: int = 1
    """Passes over the training data."""
    max_steps: int | None = None
    """Cap on optimizer steps in total (tests, demos); None = no cap. An epoch cut short by the
    cap counts as done."""
    precision: str = "auto"
    """auto | fp32 | bf16 | fp16. auto = bf16 on a CUDA device that supports it, else fp32.
    fp16 (with loss scaling) needs CUDA."""
    grad_accum_steps: int = 1
    """Batches whose gradients are summed (loss divided by this) before each optimizer step."""
    clip_grad_norm: float | None = None
    """Clip the global gradient norm to this value before each optimizer step; None = no clipping."""
    log_every: int = 50
    """Optimizer steps between logged training lines."""
    eval_every: int = 1
    """Epochs between evaluations (0: only after the last epoch, which is always evaluated)."""
    save_every: int = 1
    """Epochs between checkpoints (the last epoch always saves)."""
    max_nonfinite: int = 3
    """Consecutive non-finite losses that stop the run with NonFiniteLossError."""
    seed: int = 0
    """Seed of Python, NumPy and torch (rank r uses seed + r; DDP copies rank 0's weights)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N. auto = the launcher's GPU when CUDA is available, else CPU."""
    overwrite: bool = False
    """Delete a run already in output_dir and start again."""
    resume: bool = False
    """Continue the run in output_dir from its last checkpoint (a new run when there is none)."""
    progress: bool = False
    """Show a progress bar over each epoch's batches (stderr, rank 0)."""

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, Path):
            self.output_dir = str(self.output_dir)
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ValueError(f"output_dir must be a non-empty path, got {self.output_dir!r}")
        _check_int("epochs", self.epochs, minimum=1)
        if self.max_steps is not None:
            _check_int("max_steps", self.max_steps, minimum=1)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check_int("grad_accum_steps", self.grad_accum_steps, minimum=1)
        if self.clip_grad_norm is not None and not (
            isinstance(self.clip_grad_norm, (int, float)) and self.clip_grad_norm > 0
        ):
            raise ValueError(
                f"clip_grad_norm must be a positive number or None, got {self.clip_grad_norm!r}"
            )
        _check_int("log_every", self.log_every, minimum=1)
        _check_int("eval_every", self.eval_every, minimum=0)
        _check_int("save_every", self.save_every, minimum=1)
        _check_int("max_nonfinite", self.max_nonfinite, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if not _valid_device(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.overwrite and self.resume:
            raise ValueError("resume and overwrite exclude each other; pass at most one")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainerConfig field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _valid_device(device: Any) -> bool:
    if not isinstance(device, str):
        return False
    if device in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


@dataclass
class StepOutput:
    """What :meth:`TrainTask.training_step` may return instead of a bare loss."""

    loss: torch.Tensor
    """Scalar loss of this batch (on this rank); backpropagated unless it is non-finite."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Extra numbers to log; averaged over the epoch (and the ranks) as ``train_<name>``."""
    commit: Callable[[], None] | None = None
    """Called only when the loss is finite on every rank, before backward: put updates of task
    state that depend on this batch here (a memory bank, a queue), so a skipped batch leaves them
    untouched."""


class TrainTask:
    """What one paper trains; subclass it and override the methods below.

    Only paper-specific things live here. The trainer calls, in order: :meth:`build_model`,
    :meth:`build_optimizer`, :meth:`train_dataloader`, :meth:`build_scheduler`, then per batch
    :meth:`training_step` and after each optimizer step :meth:`on_step_end`; :meth:`evaluate` at
    evaluation epochs on every rank.
    """

    name: str = "task"

    def config_dict(self) -> dict[str, Any]:
        """The package's config (JSON-serialisable); saved in config.json and compared on resume."""
        return {}

    def build_model(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must implement build_model()")

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Called with the model already on the training device."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_optimizer()")

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
    ) -> Any:
        """A learning-rate scheduler stepped once per optimizer step, or None.

        ``steps_per_epoch`` counts optimizer steps on this rank (after sharding and accumulation).
        """
        return None

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Called after the process group exists (``torch.distributed`` is initialised under a
        launcher). The loader as for one process, with a plain (or shuffling) sampler, no
        DistributedSampler: the trainer shards it across ranks and moves batches to the device.
        ``batch_size`` is per rank, so the global batch is ``batch_size * world_size``. A shuffled
        loader's order in epoch e is drawn from ``TrainerConfig.seed + e`` (the same on every rank
        and after a resume)."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_dataloader()")

    def training_step(self, model: nn.Module, batch: Any, step: int) -> torch.Tensor | StepOutput:
        """Loss of one batch. ``model`` is the wrapped (DDP) model: call it, do not change state
        that a skipped batch must not touch (use :attr:`StepOutput.commit` or :meth:`on_step_end`).
        ``step`` counts optimizer steps done so far."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_step()")

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of the unwrapped model (already in eval mode, under no_grad); every rank calls
        it. Keys are logged as they are, so name them (``val_acc``)."""
        return {}

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules trained by optimizers of their own, e.g. a GAN critic (default: none). The
        trainer moves them to the device, wraps them for DDP and checkpoints them."""
        return {}

    def build_extra_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, Any]:
        """One optimizer per name used in :meth:`extra_steps` (over :meth:`extra_modules`,
        already on the device)."""
        return {}

    def extra_steps(
        self, model: nn.Module, modules: dict[str, nn.Module], batch: Any, step: int
    ) -> Iterable[tuple[str, torch.Tensor | StepOutput]]:
        """Updates run before :meth:`training_step` on each batch: yield ``(optimizer name,
        loss)`` pairs, one per update (a generator, so each loss can see the previous update).
        The trainer applies the non-finite rule to each (a skipped one changes nothing and counts
        towards ``max_nonfinite``), backpropagates it, clips with ``clip_grad_norm``, steps and
        zeroes that optimizer. These updates are not accumulated over ``grad_accum_steps``. The
        losses must not reach the main model's parameters (detach its outputs); ``model`` and
        ``modules`` are the wrapped (DDP) modules."""
        return ()

    def on_step_end(self, model: nn.Module, step: int) -> None:
        """After each optimizer step (e.g. an EMA update); ``model`` is unwrapped."""

    def state_dict(self) -> dict[str, Any]:
        """Extra task state saved in checkpoints (EMA weights, memory banks...), one file per
        rank. Tensors, numbers, strings, lists and dicts only: it is read back with
        ``torch.load(weights_only=True)``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    history: list[dict[str, Any]]
    """One dict per epoch (also in history.jsonl), including earlier runs of a resumed folder."""
    final: dict[str, Any]
    """The last epoch's numbers plus totals (also in metrics.json)."""
    nothing_to_do: bool
    """True when a resumed run had already finished every epoch."""
    model: nn.Module
    """The trained model, unwrapped (no DDP, no autocast wrapper)."""


class _Counters:
    """Trainer progress saved beside the accelerate state."""

    def __init__(self) -> None:
        self.epochs_done = 0
        self.step = 0
        self.nonfinite_total = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "epochs_done": self.epochs_done,
            "step": self.step,
            "nonfinite_total": self.nonfinite_total,
        }

    def load(self, data: Mapping[str, Any]) -> None:
        self.epochs_done = int(data["epochs_done"])
        self.step = int(data["step"])
        self.nonfinite_total = int(data.get("nonfinite_total", 0))


class _SchedulerState:
    """Checkpoints the raw scheduler (accelerate's wrapper would step it once per process)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                keys.append(name)
            else:
                keys.extend(_diff_keys(old[key], new[key], name))
        return keys
    return [] if old == new else [prefix or "<root>"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _distributed_env() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Trainer:
    """Trains a :class:`TrainTask` as :class:`TrainerConfig` says; call :meth:`fit` once."""

    def __init__(self, task: TrainTask, config: TrainerConfig) -> None:
        if not isinstance(task, TrainTask):
            raise TypeError(f"task must be a TrainTask, got {type(task).__name__}")
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        self.task = task
        self.config = config
        self.run_dir = Path(config.output_dir)
        self._is_main = True  # set per fit; only rank 0 logs
        self._extra_modules: dict[str, nn.Module] = {}
        self._extra_optimizers: dict[str, Any] = {}
        self._in_a_row = 0
        self._skipped_in_epoch = 0

    def _info(self, message: str, *args: Any) -> None:
        if self._is_main:
            logger.info(message, *args)

    def _warning(self, message: str, *args: Any) -> None:
        if self._is_main:
            logger.warning(message, *args)

    # ----------------------------------------------------------------------------- setup
    def _mixed_precision(self, device: torch.device) -> str:
        precision = self.config.precision
        on_cuda = device.type == "cuda"
        if precision == "auto":
            return "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "no"
        if precision == "fp16" and not on_cuda:
            raise ValueError(
                f"precision='fp16' needs a CUDA device (loss scaling), got device {device}; "
                "use precision='bf16' or 'fp32' on CPU"
            )
        if precision == "bf16" and on_cuda and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16' is not supported by {torch.cuda.get_device_name()}")
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]

    def _make_accelerator(self) -> Any:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState
        from accelerate.utils import DataLoaderConfiguration

        device = self.config.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available; use device='cpu'")
        if ":" in device:
            if _distributed_env():
                raise ValueError(
                    f"device={device!r} under a launcher: use device='cuda' or 'auto' "
                    "(each process takes the GPU of its local rank)"
                )
            torch.cuda.set_device(int(device.split(":")[1]))
        # accelerate keeps process-wide singletons; each fit chooses its own precision and device
        AcceleratorState._reset_state(reset_partial_state=not _distributed_env())
        GradientState._reset_state()
        use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        probe_device = torch.device("cpu") if use_cpu else torch.device("cuda")
        mixed = self._mixed_precision(probe_device)
        # shuffled loaders draw epoch e's order from seed + e: the same on every rank, on one
        # process or several, and again after a resume
        data_config = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=self.config.seed)
        return Accelerator(
            cpu=use_cpu,
            mixed_precision=mixed,
            gradient_accumulation_steps=1,
            dataloader_config=data_config,
        )

    def _config_record(self) -> dict[str, Any]:
        return {
            "trainer": _jsonable(self.config.to_dict()),
            "task": _jsonable(self.task.config_dict()),
        }

    def _check_run_folder(self, record: dict[str, Any]) -> str:
        """``"new"``, ``"overwrite"`` or ``"resume"``; raises RunFolderError when refused."""
        config_path = self.run_dir / CONFIG_FILE
        if not config_path.is_file():
            if self.config.resume:
                self._info("no run in %s to resume; starting a new one", self.run_dir)
            return "new"
        if self.config.overwrite:
            return "overwrite"
        if not self.config.resume:
            raise RunFolderError(
                f"{self.run_dir} already holds a run ({CONFIG_FILE}); pass resume=True (--resume) "
                "to continue it or overwrite=True (--overwrite) to replace it, or choose another "
                "output folder"
            )
        try:
            saved = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise RunFolderError(f"cannot resume: {config_path} is not valid JSON ({err})") from err
        ignored = _RESUMABLE_KEYS | _RUN_ACTION_KEYS
        old = {
            "trainer": {k: v for k, v in saved.get("trainer", {}).items() if k not in ignored},
            "task": saved.get("task", {}),
        }
        new = {
            "trainer": {k: v for k, v in record["trainer"].items() if k not in ignored},
            "task": record["task"],
        }
        differing = _diff_keys(old, new)
        if differing:
            raise RunFolderError(
                f"cannot resume {self.run_dir}: the config differs from the saved run in "
                f"{', '.join(differing)} (only {', '.join(sorted(_RESUMABLE_KEYS))} may change on "
                "resume); use overwrite=True (--overwrite) or another output folder"
            )
        return "resume"

    # ------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Train (or resume) and return a :class:`TrainResult`."""
        accelerator = self._make_accelerator()
        try:
            return self._fit(accelerator)
        finally:
            # drop the DDP wrapper and the prepared objects before the caller leaves the group
            accelerator.free_memory()
            gc.collect()

    def _fit(self, accelerator: Any) -> TrainResult:
        from accelerate.utils import set_seed

        cfg = self.config
        is_main = self._is_main = accelerator.is_main_process
        record = self._config_record()
        mode = self._check_run_folder(record)
        accelerator.wait_for_everyone()  # every rank has read the folder before rank 0 changes it
        if is_main:
            if mode == "overwrite":
                self._info("overwriting the run in %s", self.run_dir)
                shutil.rmtree(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()

        set_seed(cfg.seed, device_specific=True)
        counters = _Counters()
        checkpoint_dir = self.run_dir / CHECKPOINT_DIR
        previous = self.run_dir / (CHECKPOINT_DIR + ".old")
        if mode == "resume" and not checkpoint_dir.is_dir() and (previous / _STATE_FILE).is_file():
            # stopped while swapping in a new checkpoint: the previous one is complete
            checkpoint_dir = previous
        if mode == "resume" and (checkpoint_dir / _STATE_FILE).is_file():
            counters.load(json.loads((checkpoint_dir / _STATE_FILE).read_text()))
        if mode == "resume" and self._finished(counters):
            return self._nothing_to_do(accelerator, counters)

        model = self.task.build_model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"build_model() must return an nn.Module, got {type(model).__name__}")
        model.to(accelerator.device)
        optimizer = self.task.build_optimizer(model)
        dataloader = self.task.train_dataloader()
        extra_modules = dict(self.task.extra_modules())
        for module in extra_modules.values():
            module.to(accelerator.device)
        extra_optimizers = dict(self.task.build_extra_optimizers(extra_modules))
        prepared = accelerator.prepare(
            model, optimizer, dataloader, *extra_modules.values(), *extra_optimizers.values()
        )
        wrapped, optimizer, dataloader = prepared[:3]
        n_extra = len(extra_modules)
        self._extra_modules = dict(zip(extra_modules, prepared[3 : 3 + n_extra]))
        self._extra_optimizers = dict(zip(extra_optimizers, prepared[3 + n_extra :]))
        self._in_a_row = 0
        batches_per_epoch = len(dataloader)
        if batches_per_epoch == 0:
            raise ValueError("train_dataloader() yields no batch on this rank")
        steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
        raw_optimizer = optimizer.optimizer
        scheduler = self.task.build_scheduler(raw_optimizer, steps_per_epoch, cfg.epochs)
        if scheduler is not None:
            accelerator.register_for_checkpointing(_SchedulerState(scheduler))
        unwrapped = accelerator.unwrap_model(wrapped)

        history: list[dict[str, Any]] = []
        if mode == "resume":
            history = [h for h in _read_history(self.run_dir / HISTORY_FILE)]
            if counters.epochs_done > 0:
                accelerator.load_state(str(checkpoint_dir))
                task_state_path = checkpoint_dir / _TASK_STATE_FILE.format(
                    rank=accelerator.process_index
                )
                if not task_state_path.is_file():  # resumed with more ranks than saved
                    task_state_path = checkpoint_dir / _TASK_STATE_FILE.format(rank=0)
                if task_state_path.is_file():
                    self.task.load_state_dict(
                        torch.load(task_state_path, map_location="cpu", weights_only=True)
                    )
                self._info(
                    "resuming %s after epoch %d (step %d)",
                    self.run_dir,
                    counters.epochs_done,
                    counters.step,
                )
            # epochs after the last checkpoint are trained again; their lines are dropped
            history = [h for h in history if int(h.get("epoch", 0)) <= counters.epochs_done]
        if is_main:
            (self.run_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
            (self.run_dir / HISTORY_FILE).write_text(
                "".join(json.dumps(_jsonable(h)) + "\n" for h in history)
            )

        self._info(
            "training %s in %s: %d epoch(s), %d batch(es)/epoch/rank, %d process(es), device %s, "
            "mixed precision %s",
            self.task.name,
            self.run_dir,
            cfg.epochs,
            batches_per_epoch,
            accelerator.num_processes,
            accelerator.device,
            accelerator.mixed_precision,
        )
        wrapped.train()
        while not self._finished(counters):
            epoch = counters.epochs_done  # 0-based index of the epoch being trained
            entry = self._train_epoch(
                accelerator, wrapped, unwrapped, optimizer, scheduler, dataloader, counters, epoch
            )
            counters.epochs_done += 1
            last = self._finished(counters)
            if last or (cfg.eval_every > 0 and counters.epochs_done % cfg.eval_every == 0):
                entry.update(self._evaluate(accelerator, wrapped, unwrapped))
            history.append(entry)
            if is_main:
                with (self.run_dir / HISTORY_FILE).open("a") as fh:
                    fh.write(json.dumps(_jsonable(entry)) + "\n")
            self._info(
                "epoch %d: %s",
                counters.epochs_done,
                ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if isinstance(v, float)),
            )
            if last or counters.epochs_done % cfg.save_every == 0:
                self._save_checkpoint(accelerator, counters)

        final = self._final(history, counters)
        if is_main:
            (self.run_dir / METRICS_FILE).write_text(
                json.dumps(_jsonable(final), indent=2, sort_keys=True) + "\n"
            )
        accelerator.save_model(wrapped, str(self.run_dir), safe_serialization=True)
        accelerator.wait_for_everyone()
        result_model = accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)
        return TrainResult(
            run_dir=self.run_dir,
            history=history,
            final=final,
            nothing_to_do=False,
            model=result_model,
        )

    def _finished(self, counters: _Counters) -> bool:
        if counters.epochs_done >= self.config.epochs:
            return True
        return self.config.max_steps is not None and counters.step >= self.config.max_steps

    def _final(self, history: list[dict[str, Any]], counters: _Counters) -> dict[str, Any]:
        final = dict(history[-1]) if history else {}
        final.update(
            epochs_done=counters.epochs_done,
            steps=counters.step,
            nonfinite_skipped_total=counters.nonfinite_total,
        )
        return final

    def _nothing_to_do(self, accelerator: Any, counters: _Counters) -> TrainResult:
        self._info(
            "nothing to do: %s already finished %d epoch(s) (%d step(s)); raise epochs or "
            "max_steps to train further",
            self.run_dir,
            counters.epochs_done,
            counters.step,
        )
        history = _read_history(self.run_dir / HISTORY_FILE)
        metrics_path = self.run_dir / METRICS_FILE
        final = (
            json.loads(metrics_path.read_text())
            if metrics_path.is_file()
            else self._final(history, counters)
        )
        model = self.task.build_model()
        weights = self.run_dir / MODEL_FILE
        if weights.is_file():
            from safetensors.torch import load_model

            load_model(model, str(weights), device="cpu")
        accelerator.wait_for_everyone()
        return TrainResult(
            run_dir=self.run_dir, history=history, final=final, nothing_to_do=True, model=model
        )

    # ------------------------------------------------------------------------- one epoch
    def _train_epoch(
        self,
        accelerator: Any,
        wrapped: nn.Module,
        unwrapped: nn.Module,
        optimizer: Any,
        scheduler: Any,
        dataloader: Any,
        counters: _Counters,
        epoch: int,
    ) -> dict[str, Any]:
        cfg = self.config
        device = accelerator.device
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        metric_sums: dict[str, float] = {}
        good_batches = 0
        self._skipped_in_epoch = 0
        pending = 0  # micro-batches whose gradients wait for the next optimizer step
        batches = len(dataloader)
        window_loss = 0.0
        window_count = 0
        start = time.perf_counter()
        buffers = [b for b in unwrapped.buffers() if b is not None]
        for module in self._extra_modules.values():
            buffers += [b for b in accelerator.unwrap_model(module).buffers() if b is not None]
        iterator: Iterable[Any] = dataloader
        if cfg.progress and accelerator.is_main_process:
            from papers_shared.progress import progress_bar

            iterator = progress_bar(dataloader, enabled=True, desc=f"epoch {epoch + 1}")
        for index, batch in enumerate(iterator):
            boundary = (index + 1) % cfg.grad_accum_steps == 0 or index + 1 == batches
            if self._extra_optimizers:
                self._extra_updates(accelerator, wrapped, batch, buffers, counters, epoch, index)
            snapshot = [b.detach().clone() for b in buffers]
            sync = accelerator.no_sync(wrapped) if not boundary else contextlib.nullcontext()
            with sync:
                with accelerator.autocast():
                    out = self.task.training_step(wrapped, batch, counters.step)
                step_out = out if isinstance(out, StepOutput) else StepOutput(loss=out)
                loss = step_out.loss
                if self._nonfinite(accelerator, loss, "training_step"):
                    self._skip(buffers, snapshot, counters, epoch, index)
                else:
                    self._in_a_row = 0
                    if step_out.commit is not None:
                        step_out.commit()
                    accelerator.backward(loss / cfg.grad_accum_steps)
                    pending += 1
                    good_batches += 1
                    loss_value = loss.detach().double()
                    loss_sum += loss_value
                    window_loss += float(loss_value)
                    window_count += 1
                    for key, value in step_out.metrics.items():
                        metric_sums[key] = metric_sums.get(key, 0.0) + float(value)
            if boundary and pending > 0:
                if cfg.clip_grad_norm is not None:
                    accelerator.clip_grad_norm_(wrapped.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                if scheduler is not None and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                pending = 0
                counters.step += 1
                self.task.on_step_end(unwrapped, counters.step)
                if counters.step % cfg.log_every == 0 and window_count:
                    self._info(
                        "epoch %d step %d: loss %.4g, lr %.3g",
                        epoch + 1,
                        counters.step,
                        window_loss / window_count,
                        _lr(optimizer),
                    )
                    window_loss, window_count = 0.0, 0
                if cfg.max_steps is not None and counters.step >= cfg.max_steps:
                    break
            elif boundary:
                optimizer.zero_grad(set_to_none=True)
        # average over every good batch of every rank
        totals = torch.tensor(
            [float(loss_sum), float(good_batches)],
            dtype=torch.float64,
            device=device,
        )
        names = sorted(metric_sums)
        metric_totals = torch.tensor(
            [metric_sums[k] for k in names], dtype=torch.float64, device=device
        )
        if accelerator.num_processes > 1:
            totals = accelerator.reduce(totals, reduction="sum")
            if names:
                metric_totals = accelerator.reduce(metric_totals, reduction="sum")
        count = max(float(totals[1]), 1.0)
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": counters.step,
            "train_loss": float(totals[0]) / count if totals[1] > 0 else float("nan"),
        }
        for key, total in zip(names, metric_totals.tolist()):
            entry[f"train_{key}"] = total / count
        entry["lr"] = _lr(optimizer)
        # the skip decision is shared by the ranks, so is the count
        entry["nonfinite_skipped"] = self._skipped_in_epoch
        entry["seconds"] = time.perf_counter() - start
        return entry

    def _nonfinite(self, accelerator: Any, loss: Any, source: str) -> bool:
        """Whether ``loss`` is non-finite on any rank (every rank gets the same answer)."""
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(
                f"{source} must give a scalar loss tensor or a StepOutput, got "
                f"{type(loss).__name__}"
            )
        bad = torch.tensor(
            [0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0], device=accelerator.device
        )
        if accelerator.num_processes > 1:
            bad = accelerator.reduce(bad, reduction="sum")
        return float(bad) > 0

    def _skip(
        self,
        buffers: list[torch.Tensor],
        snapshot: list[torch.Tensor],
        counters: _Counters,
        epoch: int,
        index: int,
    ) -> None:
        """Undo the forward's buffer updates, count the skip, stop after too many in a row."""
        with torch.no_grad():
            for buf, saved in zip(buffers, snapshot):
                buf.copy_(saved)
        self._skipped_in_epoch += 1
        self._in_a_row += 1
        counters.nonfinite_total += 1
        self._warning(
            "non-finite loss at epoch %d batch %d (on at least one rank): update skipped "
            "(%d in a row)",
            epoch + 1,
            index,
            self._in_a_row,
        )
        if self._in_a_row >= self.config.max_nonfinite:
            raise NonFiniteLossError(
                f"{self._in_a_row} non-finite losses in a row (max_nonfinite="
                f"{self.config.max_nonfinite}) at epoch {epoch + 1}, step {counters.step}; "
                "lower the learning rate, use precision='fp32' or check the data"
            )

    def _extra_updates(
        self,
        accelerator: Any,
        wrapped: nn.Module,
        batch: Any,
        buffers: list[torch.Tensor],
        counters: _Counters,
        epoch: int,
        index: int,
    ) -> None:
        steps = iter(self.task.extra_steps(wrapped, self._extra_modules, batch, counters.step))
        while True:
            snapshot = [b.detach().clone() for b in buffers]
            with accelerator.autocast():
                item = next(steps, None)
            if item is None:
                return
            name, out = item
            if name not in self._extra_optimizers:
                raise ValueError(
                    f"extra_steps named optimizer {name!r}; build_extra_optimizers gave "
                    f"{sorted(self._extra_optimizers)}"
                )
            step_out = out if isinstance(out, StepOutput) else StepOutput(loss=out)
            if self._nonfinite(accelerator, step_out.loss, f"extra_steps ({name})"):
                self._skip(buffers, snapshot, counters, epoch, index)
                continue
            self._in_a_row = 0
            if step_out.commit is not None:
                step_out.commit()
            optimizer = self._extra_optimizers[name]
            accelerator.backward(step_out.loss)
            if self.config.clip_grad_norm is not None:
                # unscale only this optimizer: the main one may hold accumulated gradients
                accelerator.unscale_gradients(optimizer=optimizer)
                params = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def _evaluate(self, accelerator: Any, wrapped: nn.Module, unwrapped: nn.Module) -> dict:
        wrapped.eval()
        try:
            with torch.no_grad():
                metrics = self.task.evaluate(unwrapped) or {}
        finally:
            wrapped.train()
        if not isinstance(metrics, Mapping):
            raise TypeError(f"evaluate() must return a dict, got {type(metrics).__name__}")
        return {str(k): _jsonable(v) for k, v in metrics.items()}

    def _save_checkpoint(self, accelerator: Any, counters: _Counters) -> None:
        final_dir = self.run_dir / CHECKPOINT_DIR
        tmp_dir = self.run_dir / (CHECKPOINT_DIR + ".tmp")
        if accelerator.is_main_process and tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp_dir))
        # task state per rank (a memory bank may differ between ranks), like accelerate's RNG files
        torch.save(
            self.task.state_dict(),
            tmp_dir / _TASK_STATE_FILE.format(rank=accelerator.process_index),
        )
        if accelerator.is_main_process:
            (tmp_dir / _STATE_FILE).write_text(json.dumps(counters.to_dict(), indent=2) + "\n")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            # swap in the new checkpoint only once it is complete
            old_dir = self.run_dir / (CHECKPOINT_DIR + ".old")
            if old_dir.exists():
                shutil.rmtree(old_dir)
            if final_dir.exists():
                final_dir.rename(old_dir)
            tmp_dir.rename(final_dir)
            if old_dir.exists():
                shutil.rmtree(old_dir)
        accelerator.wait_for_everyone()


def _lr(optimizer: Any) -> float:
    """Learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
