"""The DyT objective (paper Eq. 6-8): CE + complete CE + self-distillation KL + rate loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DyTLoss", "rate_loss", "distillation_kl", "pixel_distillation_kl"]


def rate_loss(
    token_select: torch.Tensor, rate: float, alpha: float = 2.0, per_sample: bool = False
) -> torch.Tensor:
    """``alpha * (mean(M) - r)^2`` with one batch-global mean over samples, layers and patch tokens.

    token_select: (B, L, N, 1) straight-through masks (prefix tokens excluded).
    ``per_sample=True`` (an option, not the paper's): each image's own rate is pulled to r and
    the squared gaps are averaged.
    """
    if per_sample:
        return alpha * ((token_select.float().flatten(1).mean(1) - rate) ** 2).mean()
    return alpha * (token_select.float().mean() - rate) ** 2


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``KL(p_teacher.detach() || p_student)``, batch mean, no temperature. Logits: (B, K)."""
    return F.kl_div(
        F.log_softmax(student_logits.float(), dim=-1),
        F.log_softmax(teacher_logits.detach().float(), dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def pixel_distillation_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor
) -> torch.Tensor:
    """Pixel-wise ``KL(p_teacher.detach() || p_student)`` over classes, mean over pixels.

    Logits: (B, K, H, W). The segmentation counterpart of :func:`distillation_kl` (optional; the
    released segmentation code has no distillation).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 4:
        raise ValueError(
            "pixel KL needs two (B, K, H, W) logit maps of one shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    classes = student_logits.shape[1]
    return distillation_kl(
        student_logits.movedim(1, -1).reshape(-1, classes),
        teacher_logits.movedim(1, -1).reshape(-1, classes),
    )


@dataclass
class DyTLossOutput:
    total: torch.Tensor
    ce: torch.Tensor
    complete_ce: torch.Tensor
    kl: torch.Tensor
    rate: torch.Tensor
    activation: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


class DyTLoss(nn.Module):
    """``CE(student) + CE(complete) + KL(complete.detach() || student) + alpha (mean(M) - r)^2``.

    The complete pass is a second forward of the same trainable network (not under no_grad), so
    its CE trains adapters and head too; only the KL target is detached. Pass
    ``complete_logits=None`` to train without the complete model (the paper's ablation).
    """

    def __init__(
        self,
        rate: float,
        alpha: float = 2.0,
        label_smoothing: float = 0.0,
        per_sample_rate: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must lie in [0, 1], got {rate}")
        self.rate, self.alpha, self.label_smoothing = rate, alpha, label_smoothing
        self.per_sample_rate = per_sample_rate

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        token_select: torch.Tensor,
        complete_logits: torch.Tensor | None = None,
    ) -> DyTLossOutput:
        """logits, complete_logits: (B, K); targets: (B,) int64; token_select: (B, L, N, 1)."""
        ce = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        zero = ce.new_zeros(())
        if complete_logits is not None:
            complete_ce = F.cross_entropy(
                complete_logits.float(), targets, label_smoothing=self.label_smoothing
            )
            kl = distillation_kl(logits, complete_logits)
        else:
            complete_ce = kl = zero
        rate = rate_loss(token_select, self.rate, self.alpha, self.per_sample_rate)
        return DyTLossOutput(
            total=ce + complete_ce + kl + rate,
            ce=ce,
            complete_ce=complete_ce,
            kl=kl,
            rate=rate,
            activation=token_select.detach().float().mean(),
        )
