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
from contextlib import nullcontext
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
from softinfonce.losses import LossOutput, SoftInfoNCELoss, WeightMode
from softinfonce.models.avid import AVModel, ProjectionHead, create_av_model
from softinfonce.models.tiny import MLPEncoder

__all__ = [
    "ModelConfig",
    "PretrainConfig",
    "PretrainResult",
    "Precision",
    "autocast_dtype",
    "build_model",
    "forward_backward",
    "pretrain",
    "train_step",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]

logger = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    """Encoder sizes; the defaults are AVID's R(2+1)D-18 + Conv2D-10 + 512-512-128 heads.

    ``arch="mlp"`` swaps both backbones for tiny 2-layer MLPs (CPU demos and tests). With
    ``arch="avid"``, ``audio_arch="resnet18"`` / ``video_arch="torchvision"`` swap in the optional
    torchvision nets (:mod:`softinfonce.models.torchvision_nets`, imported only then).
    """

    arch: Literal["avid", "mlp"] = "avid"
    video_arch: Literal["avid", "torchvision"] = "avid"
    audio_arch: Literal["conv2d10", "resnet18"] = "conv2d10"
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
    # "auto": bf16 autocast on GPU, fp32 on CPU; "bf16" also on CPU; "fp16" (GPU) adds a GradScaler
    precision: Precision = "auto"
    # views per encoder forward; None = all 2N views at once (see forward_backward)
    chunk_size: int | None = None
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (negatives come from the batch), got {self.batch_size}"
            )
        if self.lr <= 0 or self.epochs < 1:
            raise ValueError("lr and epochs must be positive")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(
                f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {self.precision!r}"
            )
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {self.chunk_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        data = dict(data)
        if "mixed_precision" in data:  # config.json files written before 'precision'
            data.setdefault("precision", "auto" if data.pop("mixed_precision") else "fp32")
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
        model = create_av_model(
            config.video_depth,
            config.video_widths,
            config.audio_widths,
            config.head_dims,
            config.use_output_bn,
        )
        return _swap_torchvision_nets(model, config)
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


def _swap_torchvision_nets(model: AVModel, config: ModelConfig) -> AVModel:
    """Replace AVID's backbones by the optional torchvision ones that ``config`` names."""
    if config.video_arch not in ("avid", "torchvision"):
        raise ValueError(f"video_arch must be 'avid' or 'torchvision', got {config.video_arch!r}")
    if config.audio_arch not in ("conv2d10", "resnet18"):
        raise ValueError(f"audio_arch must be 'conv2d10' or 'resnet18', got {config.audio_arch!r}")
    if config.video_arch == "avid" and config.audio_arch == "conv2d10":
        return model
    from softinfonce.models.torchvision_nets import AudioResNet18, TorchvisionR2Plus1D18

    if config.video_arch == "torchvision":
        model.video_model = TorchvisionR2Plus1D18()  # type: ignore[assignment]
        model.video_proj = ProjectionHead(512, config.head_dims, config.use_output_bn)
    if config.audio_arch == "resnet18":
        model.audio_model = AudioResNet18()  # type: ignore[assignment]
        model.audio_proj = ProjectionHead(512, config.head_dims, config.use_output_bn)
    return model


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: full fp32)."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' (autocast + GradScaler) needs a CUDA device; use bf16")
    return torch.float16 if precision == "fp16" else torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None):  # noqa: ANN202
    return autocast(device, dtype is not None, dtype or torch.bfloat16, allow_cpu=True)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """Autocast outputs (fp16/bf16) back to fp32 for the loss; fp32/fp64 stay as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _batchnorm_buffers(model: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) of every BatchNorm running statistic, to undo a forward's update."""
    return [
        (buffer, buffer.detach().clone())
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        for buffer in module.buffers()
    ]


def forward_backward(
    model: torch.nn.Module,
    loss_fn: SoftInfoNCELoss,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> LossOutput:
    """Forward all views, compute the loss and accumulate its gradients into ``.grad``.

    ``chunk_size=None`` runs one forward per modality over all 2N views. With ``chunk_size=k``
    the views go through the encoders at most k at a time (in near-equal chunks), twice
    (gradient caching): first without a
    graph to get every embedding, then the loss over all 2N embeddings gives d loss / d embedding,
    and each chunk is re-run with a graph and back-propagated with its slice of that gradient.
    Only one chunk's activations are alive at a time, and the loss (every candidate, the
    feature weights, the cross-rank gather) is the one of the full batch, so loss and gradients
    equal the unchunked step for encoders that treat samples independently. BatchNorm layers in
    training mode normalise each chunk with its own statistics (as per-GPU BN does under DDP);
    their running statistics are updated once per chunk, by the second pass only.
    """
    video = batch["video"].to(device, non_blocking=True)
    audio = batch["audio"].to(device, non_blocking=True)
    labels = (
        batch["clip_ids"].to(device),
        batch["view_ids"].to(device),
        batch["speeds"].to(device),
    )

    def scaled(loss: torch.Tensor) -> torch.Tensor:
        return scaler.scale(loss) if scaler is not None else loss

    views = video.shape[0]
    if chunk_size is None or chunk_size >= views:
        with _autocast(device, dtype):
            z_video, z_audio = model(video, audio)  # one forward per modality over all views
        out = loss_fn(_full(z_video), _full(z_audio), *labels)
        scaled(out.loss).backward()
        return out
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    # ceil(views / chunk_size) chunks of near-equal size (none of one view when avoidable: BN)
    count = -(-views // chunk_size)
    bounds = [views * i // count for i in range(count + 1)]
    chunks = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    saved = _batchnorm_buffers(model)
    with torch.no_grad(), _autocast(device, dtype):
        pairs = [model(video[c], audio[c]) for c in chunks]
    for buffer, copy in saved:
        buffer.copy_(copy)
    z_video = _full(torch.cat([v for v, _ in pairs])).requires_grad_(True)
    z_audio = _full(torch.cat([a for _, a in pairs])).requires_grad_(True)
    out = loss_fn(z_video, z_audio, *labels)
    scaled(out.loss).backward()  # fills z.grad and the loss's own parameters (temperature)
    grad_video, grad_audio = z_video.grad, z_audio.grad
    for index, chunk in enumerate(chunks):
        # Under DDP, gradients are all-reduced once, after the last chunk.
        last = index == len(chunks) - 1
        sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(device, dtype):
                part_video, part_audio = model(video[chunk], audio[chunk])
            surrogate = (_full(part_video) * grad_video[chunk]).sum() + (
                _full(part_audio) * grad_audio[chunk]
            ).sum()
            surrogate.backward()
    return out


def train_step(
    model: torch.nn.Module,
    loss_fn: SoftInfoNCELoss,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    precision: Precision = "auto",
    *,
    chunk_size: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One optimiser step on a collated batch of views; returns the logged numbers.

    ``precision`` picks autocast (see :func:`autocast_dtype`); with ``"fp16"`` pass a
    ``torch.amp.GradScaler``. ``chunk_size`` splits the encoder forwards (see
    :func:`forward_backward`).
    """
    dtype = autocast_dtype(precision, device)
    if dtype == torch.float16 and scaler is None:
        raise ValueError("precision='fp16' needs a torch.amp.GradScaler (scaler=...)")
    optimizer.zero_grad(set_to_none=True)
    out = forward_backward(
        model, loss_fn, batch, device, chunk_size=chunk_size, dtype=dtype, scaler=scaler
    )
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
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
    dtype = autocast_dtype(config.precision, ctx.device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
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
                ddp_model,
                loss_fn,
                optimizer,
                batch,
                ctx.device,
                config.precision,
                chunk_size=config.chunk_size,
                scaler=scaler,
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
