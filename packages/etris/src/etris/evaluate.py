"""Metrics of referring segmentation: mIoU (the paper's number), oIoU and precision@X."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

__all__ = [
    "PREC_THRESHOLDS",
    "THRESHOLD",
    "iou_stats",
    "RISMetrics",
    "predict_probs",
    "evaluate_model",
]

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


THRESHOLD = 0.35


def predict_probs(
    model: torch.nn.Module, image: torch.Tensor, ids: torch.Tensor, size: int | None = None
) -> torch.Tensor:
    """Sigmoid of the logits, upsampled bicubically (align_corners=True) to ``size`` (default: the
    input size), clamped to [0, 1]. image: (B, 3, S, S), ids: (B, L) -> (B, 1, size, size)."""
    import torch.nn.functional as F

    logits = model(image, ids)
    size = size or image.shape[-1]
    probs = torch.sigmoid(logits.float())
    probs = F.interpolate(probs, size=(size, size), mode="bicubic", align_corners=True)
    return probs.clamp(0, 1)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    loader: Iterable[dict],
    device: torch.device | str = "cpu",
    threshold: float = THRESHOLD,
    text_blind_ids: torch.Tensor | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """mIoU / oIoU / Pr@X of ``model`` over a loader.

    Batches with ``orig_mask`` and ``box`` (the RefCOCO readers in eval mode) are scored at the
    original image size after the inverse letterbox; other batches (the shapes data) against
    ``mask`` > 0.5 at the input size. ``text_blind_ids`` replaces every sentence (the text-blind
    baseline).
    """
    from etris.data.transforms import unwarp_letterbox
    from papers_shared.progress import progress_bar

    was_training = model.training
    model.eval()
    metrics = RISMetrics()
    for batch in progress_bar(loader, enabled=progress, desc="eval", leave=False):
        image = batch["image"].to(device)
        ids = batch["ids"].to(device)
        if text_blind_ids is not None:
            ids = text_blind_ids.to(device).expand_as(ids)
        probs = predict_probs(model, image, ids).cpu()
        if "orig_mask" in batch:
            for prob, box, target in zip(probs, batch["box"], batch["orig_mask"]):
                pred = unwarp_letterbox(prob, box)[0] > threshold
                metrics.update(pred, target)
        else:
            metrics.update(probs[:, 0] > threshold, batch["mask"][:, 0] > 0.5)
    model.train(was_training)
    return metrics.compute()
