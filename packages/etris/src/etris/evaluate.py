"""Metrics of referring segmentation: mIoU (the paper's number), oIoU and precision@X."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

__all__ = ["PREC_THRESHOLDS", "iou_stats", "RISMetrics"]

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def iou_stats(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample intersection and union of binary masks. pred, target: (B, H, W) bool -> (B,), (B,)."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    pred, target = pred.bool().flatten(1), target.bool().flatten(1)
    inter = (pred & target).sum(1).double()
    union = (pred | target).sum(1).double()
    return inter, union


@dataclass
class RISMetrics:
    """Accumulates per-sample IoU. IoU_i = I / (U + 1e-6); mIoU = mean IoU_i; oIoU = sum I / sum U;
    Pr@X = fraction of samples with IoU_i > X (strict)."""

    ious: list[float] = field(default_factory=list)
    inter: float = 0.0
    union: float = 0.0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (B, H, W) binary masks (or (H, W) for one sample)."""
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
        inter, union = iou_stats(pred, target)
        self.ious.extend((inter / (union + 1e-6)).tolist())
        self.inter += float(inter.sum())
        self.union += float(union.sum())

    def merge(self, others: Iterable[RISMetrics]) -> RISMetrics:
        for other in others:
            self.ious.extend(other.ious)
            self.inter += other.inter
            self.union += other.union
        return self

    def compute(self) -> dict[str, float]:
        if not self.ious:
            raise ValueError("no samples were evaluated")
        ious = torch.tensor(self.ious, dtype=torch.float64)
        out = {
            "mIoU": float(ious.mean()),
            "oIoU": self.inter / self.union if self.union > 0 else 0.0,
            "num_samples": float(len(self.ious)),
        }
        for thr in PREC_THRESHOLDS:
            out[f"Pr@{thr:.1f}"] = float((ious > thr).double().mean())
        return out
