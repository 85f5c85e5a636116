"""The training objective: per-pixel binary cross-entropy against a soft target mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["etris_loss"]


def etris_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits; the target is resized (nearest) to the logits when sizes differ.

    logits: (B, 1, h, w); target: (B, 1, H, W) or (B, H, W) in [0, 1] (soft, as the paper's code:
    the 0/255 mask warped bilinearly and divided by 255, not re-binarised).
    """
    if target.ndim == 3:
        target = target[:, None]
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (B, 1, h, w), got {tuple(logits.shape)}")
    if target.shape[0] != logits.shape[0] or target.shape[1] != 1:
        raise ValueError(
            f"target must be (B, 1, H, W) matching batch {logits.shape[0]}, got {tuple(target.shape)}"
        )
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target.float(), size=logits.shape[-2:], mode="nearest")
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
