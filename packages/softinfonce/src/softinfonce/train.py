"""What is specific to the paper's pre-training: speed co-augmented clips -> both encoders ->
SoftInfoNCE, as a :class:`papers_shared.trainer.TrainTask`.

The loop, DDP (``torchrun`` / ``accelerate launch``; gloo on CPU), precision
(``auto | fp32 | bf16 | fp16``), checkpoint/resume, the run-folder rules and the handling of
non-finite losses come from :class:`papers_shared.trainer.Trainer`. Here: the model, Adam, the
co-augmented data, the loss of one batch (with the embeddings of all ranks gathered, clip ids being
the data set's global indices) and optional chunked encoder forwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from papers_shared.trainer import StepOutput, Trainer, TrainerConfig, TrainTask
from softinfonce.config import ModelConfig, PretrainConfig
from softinfonce.data.datasets import (
    ClipRecord,
    SpeedBatchSampler,
    SpeedCoAugDataset,
    collate_views,
)
from softinfonce.losses import LossOutput, SoftInfoNCELoss
from softinfonce.models.avid import AVModel, ProjectionHead, create_av_model
from softinfonce.models.tiny import MLPEncoder

__all__ = [
    "ModelConfig",
    "PretrainConfig",
    "PretrainResult",
    "SoftInfoNCETask",
    "build_model",
    "encode_views",
    "batch_loss",
    "pretrain",
]

logger = logging.getLogger(__name__)


def build_model(config: ModelConfig, augment: Any = None) -> AVModel:
    """The AV model of ``config``; ``arch="mlp"`` needs ``augment`` (a ``CoAugConfig``) for the
    input shapes."""
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
        audio,
        ProjectionHead(config.mlp_features, config.head_dims, config.use_output_bn),
        ProjectionHead(config.mlp_features, config.head_dims, config.use_output_bn),
    )


def _swap_torchvision_nets(model: AVModel, config: ModelConfig) -> AVModel:
    """Replace AVID's backbones by the optional torchvision ones that ``config`` names."""
    if config.video_arch == "avid" and config.audio_arch == "conv2d10":
        return model
    from softinfonce.models.torchvision_nets import AudioResNet18, TorchvisionR2Plus1D18

    if config.video_arch == "torchvision":
        model.video_model = TorchvisionR2Plus1D18()
        model.video_proj = ProjectionHead(512, config.head_dims, config.use_output_bn)
    if config.audio_arch == "resnet18":
        model.audio_model = AudioResNet18()
        model.audio_proj = ProjectionHead(512, config.head_dims, config.use_output_bn)
    return model


# ------------------------------------------------------------------------- chunked forwards
def _chunks(views: int, chunk_size: int) -> list[slice]:
    """``ceil(views / chunk_size)`` slices of near-equal size (no one-view chunk when avoidable:
    BatchNorm)."""
    count = -(-views // chunk_size)
    bounds = [views * i // count for i in range(count + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def _batchnorm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) of every BatchNorm running statistic, to undo a forward's update."""
    return [
        (buffer, buffer.detach().clone())
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        for buffer in module.buffers()
    ]


class _ChunkedEncode(torch.autograd.Function):
    """All views' embeddings at the memory cost of one chunk (gradient caching).

    Forward: every chunk through the model without a graph (BatchNorm statistics restored
    afterwards). Backward: each chunk again, with a graph, back-propagated at once with its slice
    of the incoming gradient, so only one chunk's activations are alive at a time. Parameter
    gradients accumulate directly into ``.grad`` (as in re-entrant activation checkpointing); under
    DDP every chunk but the last runs inside ``no_sync``, so gradients are all-reduced once.
    """

    @staticmethod
    def forward(
        ctx: Any,
        model: nn.Module,
        chunk_size: int,
        video: torch.Tensor,
        audio: torch.Tensor,
        anchor: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.model, ctx.chunks = model, _chunks(video.shape[0], chunk_size)
        ctx.autocast = _autocast_state(video.device)
        ctx.save_for_backward(video, audio)
        saved = _batchnorm_buffers(model)
        with torch.no_grad():
            pairs = [model(video[c], audio[c]) for c in ctx.chunks]
            for buffer, copy in saved:
                buffer.copy_(copy)
        return torch.cat([v for v, _ in pairs]), torch.cat([a for _, a in pairs])

    @staticmethod
    def backward(ctx: Any, grad_video: torch.Tensor, grad_audio: torch.Tensor):  # noqa: ANN205
        video, audio = ctx.saved_tensors
        model = ctx.model
        device_type, enabled, dtype = ctx.autocast
        for index, chunk in enumerate(ctx.chunks):
            last = index == len(ctx.chunks) - 1
            sync = model.no_sync() if not last and hasattr(model, "no_sync") else nullcontext()
            with sync, torch.enable_grad():
                with torch.autocast(device_type, dtype=dtype, enabled=enabled):
                    part_video, part_audio = model(video[chunk], audio[chunk])
                torch.autograd.backward(
                    (part_video, part_audio),
                    (
                        grad_video[chunk].to(part_video.dtype),
                        grad_audio[chunk].to(part_audio.dtype),
                    ),
                )
        return None, None, None, None, None


def _autocast_state(device: torch.device) -> tuple[str, bool, torch.dtype]:
    device_type = "cuda" if device.type == "cuda" else "cpu"
    return (
        device_type,
        torch.is_autocast_enabled(device_type),
        torch.get_autocast_dtype(device_type),
    )


def encode_views(
    model: nn.Module,
    video: torch.Tensor,
    audio: torch.Tensor,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs ``(z_video, z_audio)``, each ``(V, D)``, of ``video (V, 3, T, H, W)`` and
    ``audio (V, 1, time, freq)``.

    ``chunk_size=None`` runs one forward per modality over all V views. With ``chunk_size=k`` the
    views go through the encoders at most k at a time, twice (gradient caching, see
    :class:`_ChunkedEncode`): loss and gradients equal the unchunked ones for encoders that treat
    samples independently, and only one chunk's activations are alive at a time. Train-mode
    BatchNorm normalises each chunk with its own statistics (as per-GPU BN does under DDP); its
    running statistics are updated once per chunk, by the second pass only.
    """
    if chunk_size is None or chunk_size >= video.shape[0] or not torch.is_grad_enabled():
        return model(video, audio)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    anchor = torch.zeros((), device=video.device, requires_grad=True)
    return _ChunkedEncode.apply(model, chunk_size, video, audio, anchor)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """Autocast outputs (fp16/bf16) back to fp32 for the loss; fp32/fp64 stay as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def batch_loss(
    model: nn.Module,
    loss_fn: SoftInfoNCELoss,
    batch: dict[str, torch.Tensor],
    *,
    chunk_size: int | None = None,
) -> LossOutput:
    """SoftInfoNCE of one collated batch (2N views, see ``collate_views``); backward is the
    caller's. Under autocast the encoders run in low precision and the loss in float32."""
    device = next(model.parameters()).device
    video = batch["video"].to(device, non_blocking=True)
    audio = batch["audio"].to(device, non_blocking=True)
    z_video, z_audio = encode_views(model, video, audio, chunk_size)
    # The loss runs outside autocast, in float32 (or the embeddings' own wider dtype).
    with torch.autocast(device.type, enabled=False):
        return loss_fn(
            _full(z_video),
            _full(z_audio),
            batch["clip_ids"].to(device),
            batch["view_ids"].to(device),
            batch["speeds"].to(device),
        )


# ------------------------------------------------------------------------------------ task
class SoftInfoNCETask(TrainTask):
    """Speed co-augmented audio-visual pre-training with SoftInfoNCE, for the shared trainer.

    ``batch_size`` in ``config`` is per process (the trainer's rule), so the global batch is
    ``batch_size * world_size`` clips, i.e. twice as many views. ``decoded_from`` lends the decoded
    files of another data set over the same records (``cache_decoded=True``), so several runs on
    the same clips decode them once.
    """

    name = "softinfonce"

    def __init__(
        self,
        config: PretrainConfig,
        records: Sequence[ClipRecord],
        *,
        decoded_from: SpeedCoAugDataset | None = None,
    ) -> None:
        self.config = config
        self.records = list(records)
        self.decoded_from = decoded_from
        self.loss_fn = SoftInfoNCELoss(
            temperature=config.temperature,
            weight_mode=config.weight_mode,
            const_weight=config.const_weight,
            normalize_targets=config.normalize_targets,
            learnable_temperature=config.learnable_temperature,
        )

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def build_model(self) -> AVModel:
        return build_model(self.config.model, self.config.augment)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        device = next(model.parameters()).device
        self.loss_fn.to(device)
        extra = list(self.loss_fn.parameters())
        if extra and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # The temperature is outside the DDP module: average its gradient across ranks here.
            world = dist.get_world_size()
            for param in extra:
                param.register_hook(lambda grad: _all_reduce_mean(grad, world))
        return torch.optim.Adam(
            [*model.parameters(), *extra],
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
        )

    def train_dataloader(self) -> DataLoader:
        cfg = self.config
        dataset = SpeedCoAugDataset(
            self.records, cfg.augment, backend=cfg.backend, cache=cfg.cache_decoded
        )
        if self.decoded_from is not None:
            dataset.share_decoded(self.decoded_from)
        if cfg.cache_decoded:
            dataset.preload()
        if len(dataset) < cfg.batch_size:
            raise ValueError(f"{len(dataset)} clips are fewer than one batch of {cfg.batch_size}")
        common: dict[str, Any] = {
            "num_workers": cfg.num_workers,
            "collate_fn": collate_views,
            "persistent_workers": cfg.num_workers > 0,
        }
        if cfg.augment.speed_sampling == "per_batch":
            batches = SpeedBatchSampler(
                RandomSampler(dataset), cfg.batch_size, cfg.augment.speeds, seed=0
            )
            return DataLoader(dataset, batch_sampler=batches, **common)
        return DataLoader(
            dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True, **common
        )

    def training_step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        out = batch_loss(model, self.loss_fn, batch, chunk_size=self.config.chunk_size)
        metrics = {"pos_acc": out.positive_accuracy, "candidates": float(out.num_candidates)}
        if out.mean_weight == out.mean_weight:  # nan without partial pairs (one view per clip)
            metrics["mean_w"] = out.mean_weight
        return StepOutput(out.loss, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss_fn.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "loss" in state:
            self.loss_fn.load_state_dict(state["loss"])


def _all_reduce_mean(grad: torch.Tensor, world: int) -> torch.Tensor:
    grad = grad.clone()
    dist.all_reduce(grad)
    return grad / world


@dataclass
class PretrainResult:
    """The trained model and the trainer's per-epoch history."""

    model: AVModel
    history: list[dict[str, Any]]
    run_dir: Path
    final: dict[str, Any]


def pretrain(
    config: PretrainConfig,
    records: Sequence[ClipRecord],
    trainer_config: TrainerConfig,
    *,
    decoded_from: SpeedCoAugDataset | None = None,
) -> PretrainResult:
    """Pre-train on ``records`` with the shared trainer (see :class:`SoftInfoNCETask`)."""
    task = SoftInfoNCETask(config, records, decoded_from=decoded_from)
    result = Trainer(task, trainer_config).fit()
    model = result.model
    if not isinstance(model, AVModel):
        raise TypeError(f"expected the trained AVModel, got {type(model).__name__}")
    return PretrainResult(
        model=model, history=result.history, run_dir=result.run_dir, final=result.final
    )
