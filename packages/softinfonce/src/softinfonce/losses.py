"""SoftInfoNCE: cross-modal InfoNCE over 2N views with soft targets for partial pairs.

For M views (N clips x 2 speeds) with L2-normalised video/audio embeddings ``zv, za: (M, D)``,
clip ids ``c`` and view ids ``u``, the v->a logits are ``L = zv za^T / tau`` and the targets are
1 for the same clip and view, ``w_ij`` for the same clip at the other speed (the partial pair),
0 otherwise. ``loss_v2a = mean_i -sum_j Y_ij log softmax_j(L_i)``; the a->v loss uses ``L^T``;
the total is their mean. The partial candidate stays in the softmax denominator and targets are
not renormalised (label mass 1 + w), as in SNCLR. ``w`` is always computed without gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from softinfonce.config import WEIGHT_MODES, WeightMode

__all__ = [
    "WeightMode",
    "soft_target_cross_entropy",
    "partial_pair_weights",
    "soft_targets",
    "soft_info_nce",
    "SoftInfoNCELoss",
    "LossOutput",
    "gather_with_grad",
]


def soft_target_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """``mean_i [ -scale * sum_j targets_ij * log_softmax(logits)_ij ]``; ``logits, targets: (B, K)``.

    Targets are used as given (no renormalisation). SNCLR's loss is this with targets
    ``one_hot + attention over the k neighbours`` and ``scale = 2 * tau``.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must have the same shape, got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    return -(scale * targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


@torch.no_grad()
def partial_pair_weights(
    mode: WeightMode,
    anchor_modality: torch.Tensor,
    candidate_modality: torch.Tensor,
    speeds_rows: torch.Tensor,
    speeds_cols: torch.Tensor,
    const: float = 0.5,
) -> torch.Tensor:
    """Soft weight ``w_ij`` for every (row, column) pair, shape ``(M_rows, M_cols)``; no gradient.

    ``feature``: ``max(0, cos)`` between the two views' embeddings of the *candidate* modality
    (for v->a: the audio of view i and the audio of view j); ``ratio``: ``min(s)/max(s)``;
    ``const``: ``const``; ``zero``: 0. The caller keeps only the partial pairs. The weights have
    the dtype and device of ``anchor_modality`` (the embeddings), whatever the dtype of the speeds.
    """
    dtype, device = anchor_modality.dtype, anchor_modality.device
    rows_count, cols_count = speeds_rows.shape[0], speeds_cols.shape[0]
    if mode == "feature":
        a = F.normalize(anchor_modality.detach(), dim=-1)
        b = F.normalize(candidate_modality.detach().to(dtype), dim=-1)
        return (a @ b.T).clamp_(min=0.0)
    if mode == "ratio":
        rows = speeds_rows.to(device=device, dtype=dtype)[:, None]
        cols = speeds_cols.to(device=device, dtype=dtype)[None, :]
        return torch.minimum(rows, cols) / torch.maximum(rows, cols)
    if mode == "const":
        if not 0.0 <= const <= 1.0:
            raise ValueError(f"const weight must be in [0, 1], got {const}")
        return torch.full((rows_count, cols_count), float(const), dtype=dtype, device=device)
    if mode == "zero":
        return torch.zeros(rows_count, cols_count, dtype=dtype, device=device)
    raise ValueError(f"weight mode must be one of {WEIGHT_MODES}, got {mode!r}")


def soft_targets(
    clip_rows: torch.Tensor,
    view_rows: torch.Tensor,
    clip_cols: torch.Tensor,
    view_cols: torch.Tensor,
    weights: torch.Tensor,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(targets, positive mask, partial mask)``, each ``(M_rows, M_cols)``; targets take the
    dtype of ``weights``."""
    same_clip = clip_rows[:, None] == clip_cols[None, :]
    same_view = view_rows[:, None] == view_cols[None, :]
    positive = same_clip & same_view
    partial = same_clip & ~same_view
    targets = positive.to(weights.dtype) + partial.to(weights.dtype) * weights
    if normalize:
        targets = targets / targets.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return targets, positive, partial


@dataclass
class LossOutput:
    """The loss and what the training loop logs."""

    loss: torch.Tensor
    loss_v2a: torch.Tensor
    loss_a2v: torch.Tensor
    mean_weight: float  # mean w over partial pairs (nan when there are none)
    positive_accuracy: float  # share of rows whose argmax is the positive, both directions
    num_candidates: int


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor (B, ...)`` from all ranks in rank order; gradients flow back.

    The backward sums gradients over ranks, so with DDP's gradient averaging the update equals
    the single-process one on the global batch. Identity when not distributed.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def _gather_plain(tensor: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def soft_info_nce(
    z_video: torch.Tensor,
    z_audio: torch.Tensor,
    clip_ids: torch.Tensor,
    view_ids: torch.Tensor,
    speeds: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    weight_mode: WeightMode = "feature",
    const_weight: float = 0.5,
    normalize_targets: bool = False,
    scale: float = 1.0,
    gather: bool = True,
) -> LossOutput:
    """Symmetric SoftInfoNCE. ``z_video, z_audio: (M, D)``; ``clip_ids, view_ids, speeds: (M,)``.

    Computed in the dtype and on the device of the embeddings (weights, targets and temperature
    included), so float64 inputs give a float64 loss and bfloat16 inputs a bfloat16 one.

    Under ``torch.distributed`` (and ``gather=True``) the candidates are the embeddings of all
    ranks and the anchors are this rank's rows; clip ids must be global.
    """
    if z_video.shape != z_audio.shape or z_video.ndim != 2:
        raise ValueError(
            f"z_video and z_audio must both be (M, D), got {tuple(z_video.shape)} and {tuple(z_audio.shape)}"
        )
    m = z_video.shape[0]
    for name, t in (("clip_ids", clip_ids), ("view_ids", view_ids), ("speeds", speeds)):
        if t.shape != (m,):
            raise ValueError(f"{name} must have shape ({m},), got {tuple(t.shape)}")
    if weight_mode not in WEIGHT_MODES:
        raise ValueError(f"weight_mode must be one of {WEIGHT_MODES}, got {weight_mode!r}")
    if z_video.dtype != z_audio.dtype:
        raise ValueError(
            f"z_video and z_audio must share a dtype, got {z_video.dtype} and {z_audio.dtype}"
        )
    zv = F.normalize(z_video, dim=-1)
    za = F.normalize(z_audio, dim=-1)
    # The temperature follows the embeddings (a learnable one keeps its own dtype as a parameter).
    tau = temperature.to(zv) if isinstance(temperature, torch.Tensor) else temperature
    use_gather = (
        gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    )
    zv_all = gather_with_grad(zv) if use_gather else zv
    za_all = gather_with_grad(za) if use_gather else za
    clips_all = _gather_plain(clip_ids) if use_gather else clip_ids
    views_all = _gather_plain(view_ids) if use_gather else view_ids
    speeds_all = _gather_plain(speeds) if use_gather else speeds

    def one_direction(
        anchor: torch.Tensor,
        candidates: torch.Tensor,
        same_rows: torch.Tensor,
        same_cols: torch.Tensor,
    ):
        logits = anchor @ candidates.T / tau
        w = partial_pair_weights(
            weight_mode, same_rows, same_cols, speeds, speeds_all, const_weight
        )
        targets, positive, partial = soft_targets(
            clip_ids, view_ids, clips_all, views_all, w, normalize_targets
        )
        loss = soft_target_cross_entropy(logits, targets, scale)
        hits = positive.gather(1, logits.detach().argmax(dim=1, keepdim=True)).float().sum()
        return loss, w[partial], hits

    # v->a: video anchors, audio candidates; w from the audio of the two views (and vice versa).
    loss_v2a, w_v2a, hits_v2a = one_direction(zv, za_all, za, za_all)
    loss_a2v, w_a2v, hits_a2v = one_direction(za, zv_all, zv, zv_all)
    weights = torch.cat([w_v2a, w_a2v])
    return LossOutput(
        loss=0.5 * (loss_v2a + loss_a2v),
        loss_v2a=loss_v2a,
        loss_a2v=loss_a2v,
        mean_weight=float(weights.mean()) if weights.numel() else float("nan"),
        positive_accuracy=float((hits_v2a + hits_a2v) / (2 * m)),
        num_candidates=int(zv_all.shape[0]),
    )


class SoftInfoNCELoss(nn.Module):
    """:func:`soft_info_nce` with its settings, and an optional learnable temperature.

    ``learnable_temperature=True`` learns ``log(1/tau)`` and clamps tau to ``temperature_range``.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        weight_mode: WeightMode = "feature",
        const_weight: float = 0.5,
        normalize_targets: bool = False,
        scale: float = 1.0,
        learnable_temperature: bool = False,
        temperature_range: tuple[float, float] = (0.01, 1.0),
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if weight_mode not in WEIGHT_MODES:
            raise ValueError(f"weight_mode must be one of {WEIGHT_MODES}, got {weight_mode!r}")
        self.weight_mode: WeightMode = weight_mode
        self.const_weight = const_weight
        self.normalize_targets = normalize_targets
        self.scale = scale
        self.temperature_range = temperature_range
        log_inv = torch.tensor(1.0 / temperature).log()
        if learnable_temperature:
            self.log_inv_temperature = nn.Parameter(log_inv)
        else:
            self.register_buffer("log_inv_temperature", log_inv)

    @property
    def temperature(self) -> torch.Tensor:
        low, high = self.temperature_range
        return (1.0 / self.log_inv_temperature.exp()).clamp(low, high)

    def forward(
        self,
        z_video: torch.Tensor,
        z_audio: torch.Tensor,
        clip_ids: torch.Tensor,
        view_ids: torch.Tensor,
        speeds: torch.Tensor,
    ) -> LossOutput:
        return soft_info_nce(
            z_video,
            z_audio,
            clip_ids,
            view_ids,
            speeds,
            temperature=self.temperature,
            weight_mode=self.weight_mode,
            const_weight=self.const_weight,
            normalize_targets=self.normalize_targets,
            scale=self.scale,
        )
