"""Pre-training loop: speed co-augmented clips -> both encoders -> SoftInfoNCE.

Runs unchanged as one process or under ``torchrun`` (DDP; gloo on CPU, NCCL on GPU): each rank
reads its share of clips (``DistributedSampler``), the loss gathers the embeddings of all ranks,
clip ids are the data set's global indices, and rank 0 writes the checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from papers_shared.checkpoint import save_safetensors
from papers_shared.distributed import (
    DistContext,
    all_reduce_mean,
    autocast,
    init_distributed,
    unwrap_model,
    wrap_ddp,
)
from papers_shared.progress import progress_bar
from papers_shared.seeding import seed_everything
from softinfonce.augment import CoAugConfig
from softinfonce.data.datasets import (
    ClipRecord,
    SpeedBatchSampler,
    SpeedCoAugDataset,
    collate_views,
)
from softinfonce.decode import VideoBackend
from softinfonce.losses import SoftInfoNCELoss, WeightMode
from softinfonce.models.avid import AVModel, ProjectionHead, create_av_model
from softinfonce.models.tiny import MLPEncoder

__all__ = [
    "ModelConfig",
    "PretrainConfig",
    "PretrainResult",
    "build_model",
    "pretrain",
    "train_step",
]

logger = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    """Encoder sizes; the defaults are AVID's R(2+1)D-18 + Conv2D-10 + 512-512-128 heads.

    ``arch="mlp"`` swaps both backbones for tiny 2-layer MLPs (CPU demos and tests).
    """

    arch: Literal["avid", "mlp"] = "avid"
    mlp_hidden: int = 256
    mlp_features: int = 128
    video_depth: int = 18
    video_widths: tuple[int, ...] = (64, 128, 256, 512)
    audio_widths: tuple[int, ...] = (64, 128, 256, 512)
    head_dims: tuple[int, ...] = (512, 512, 128)
    use_output_bn: bool = False  # not AVID's; helps tiny from-scratch runs (see ProjectionHead)


@dataclass
class PretrainConfig:
    """Everything one pre-training run needs; saved as ``config.json`` beside the weights."""

    augment: CoAugConfig = field(default_factory=CoAugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    temperature: float = 0.07  # [UNVERIFIED] AVID
    learnable_temperature: bool = False
    weight_mode: WeightMode = "feature"  # [UNVERIFIED]
    const_weight: float = 0.5
    normalize_targets: bool = False
    lr: float = 2e-4  # Adam, AVID Kinetics config [UNVERIFIED]
    weight_decay: float = 1e-5
    batch_size: int = 256  # clips per step over all ranks (2x views)
    epochs: int = 30
    max_steps: int | None = None
    num_workers: int = 2
    backend: VideoBackend = "auto"
    cache_decoded: bool = False
    mixed_precision: bool = True  # bf16 autocast on GPU only
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (negatives come from the batch), got {self.batch_size}"
            )
        if self.lr <= 0 or self.epochs < 1:
            raise ValueError("lr and epochs must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        data = dict(data)
        augment = CoAugConfig(**_tuples(data.pop("augment", {})))
        model = ModelConfig(**_tuples(data.pop("model", {})))
        return cls(augment=augment, model=model, **data)


def _tuples(data: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


@dataclass
class PretrainResult:
    model: AVModel
    history: list[dict[str, float]]
    steps: int
    seconds: float


def build_model(config: ModelConfig, augment: CoAugConfig | None = None) -> AVModel:
    """The AV model of ``config``; ``arch="mlp"`` needs ``augment`` for the input shapes."""
    if config.arch == "avid":
        return create_av_model(
            config.video_depth, config.video_widths, config.audio_widths, config.head_dims
        )
    if config.arch != "mlp":
        raise ValueError(f"arch must be 'avid' or 'mlp', got {config.arch!r}")
    if augment is None:
        raise ValueError("arch='mlp' needs the augment config to know its input shapes")
    crop, frames = augment.crop_size, augment.num_frames
    spec_frames = augment.num_samples // (augment.sample_rate // 100)
    video = MLPEncoder((3, frames, crop, crop), config.mlp_hidden, config.mlp_features)
    audio = MLPEncoder(
        (1, spec_frames, augment.n_fft // 4 + 1), config.mlp_hidden, config.mlp_features
    )
    return AVModel(
        video,
        audio,  # type: ignore[arg-type]
        ProjectionHead(config.mlp_features, config.head_dims, config.use_output_bn),
        ProjectionHead(config.mlp_features, config.head_dims, config.use_output_bn),
    )


def train_step(
    model: torch.nn.Module,
    loss_fn: SoftInfoNCELoss,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    mixed_precision: bool = True,
) -> dict[str, float]:
    """One optimiser step on a collated batch of views; returns the logged numbers."""
    video = batch["video"].to(device, non_blocking=True)
    audio = batch["audio"].to(device, non_blocking=True)
    with autocast(device, enabled=mixed_precision):
        z_video, z_audio = model(video, audio)  # one forward per modality over all views
    out = loss_fn(
        z_video.float(),
        z_audio.float(),
        batch["clip_ids"].to(device),
        batch["view_ids"].to(device),
        batch["speeds"].to(device),
    )
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return {
        "loss": float(out.loss.detach()),
        "mean_w": out.mean_weight,
        "pos_acc": out.positive_accuracy,
        "candidates": float(out.num_candidates),
    }


def _loader(
    dataset: SpeedCoAugDataset, config: PretrainConfig, ctx: DistContext, local_batch: int
) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed)
    if ctx.is_distributed:
        sampler = DistributedSampler(
            dataset, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed, drop_last=True
        )
    else:
        sampler = RandomSampler(dataset, generator=generator)
    common = {
        "num_workers": config.num_workers,
        "collate_fn": collate_views,
        "persistent_workers": config.num_workers > 0,
        "generator": generator,
    }
    if config.augment.speed_sampling == "per_batch":
        batches = SpeedBatchSampler(sampler, local_batch, config.augment.speeds, config.seed)
        return DataLoader(dataset, batch_sampler=batches, **common)
    return DataLoader(dataset, batch_size=local_batch, sampler=sampler, drop_last=True, **common)


def pretrain(
    config: PretrainConfig,
    records: Sequence[ClipRecord],
    *,
    output_dir: str | Path | None = None,
    progress: bool | None = None,
    device: str | None = None,
) -> PretrainResult:
    """Pre-train on ``records``; under torchrun ``batch_size`` is split over the ranks."""
    ctx = init_distributed(device)
    seed_everything(config.seed + ctx.rank)
    if config.batch_size % ctx.world_size:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by world size {ctx.world_size}"
        )
    local_batch = config.batch_size // ctx.world_size
    dataset = SpeedCoAugDataset(
        records, config.augment, backend=config.backend, cache=config.cache_decoded
    )
    if config.cache_decoded:
        dataset.preload()
    if len(dataset) < config.batch_size:
        raise ValueError(f"{len(dataset)} clips are fewer than one batch of {config.batch_size}")
    loader = _loader(dataset, config, ctx, local_batch)
    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = build_model(config.model, config.augment).to(ctx.device)
    loss_fn = SoftInfoNCELoss(
        temperature=config.temperature,
        weight_mode=config.weight_mode,
        const_weight=config.const_weight,
        normalize_targets=config.normalize_targets,
        learnable_temperature=config.learnable_temperature,
    ).to(ctx.device)
    ddp_model = wrap_ddp(model, ctx)
    params = list(model.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * len(loader)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    logger.info(
        "pre-training %d steps, %d clips/step (%d views), world size %d",
        total,
        config.batch_size,
        config.batch_size * config.augment.view_speeds,
        ctx.world_size,
    )
    history: list[dict[str, float]] = []
    step, started = 0, time.perf_counter()
    bar = progress_bar(total=total, enabled=(progress if ctx.is_main else False), desc="pre-train")
    ddp_model.train()
    for epoch in range(config.epochs):
        for holder in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(epoch)
        for batch in loader:
            logs = train_step(
                ddp_model, loss_fn, optimizer, batch, ctx.device, config.mixed_precision
            )
            step += 1
            logs = {"step": float(step), **logs, "loss": all_reduce_mean(logs["loss"])}
            history.append(logs)
            bar.update(1)
            if step % config.log_every == 0 or step == total:
                bar.set_postfix(loss=f"{logs['loss']:.3f}", pos_acc=f"{logs['pos_acc']:.2f}")
                logger.info(
                    "step %d loss %.4f mean_w %.3f pos_acc %.3f",
                    step,
                    logs["loss"],
                    logs["mean_w"] if not math.isnan(logs["mean_w"]) else -1,
                    logs["pos_acc"],
                )
            if step >= total:
                break
        if step >= total:
            break
    bar.close()
    model = unwrap_model(ddp_model)  # type: ignore[assignment]
    if output_dir is not None and ctx.is_main:
        save_pretrained(model, config, output_dir, history)
    return PretrainResult(
        model=model, history=history, steps=step, seconds=time.perf_counter() - started
    )


def save_pretrained(
    model: AVModel,
    config: PretrainConfig,
    output_dir: str | Path,
    history: list[dict] | None = None,
) -> Path:
    """``model.safetensors`` (AVID key names) + ``config.json`` (+ ``history.json``)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if history is not None:
        (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    return out
