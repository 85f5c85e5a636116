"""Training objectives.

KeViLI (TransVG's): ``L = L1(b_hat, b) + (1 - GIoU(b_hat, b))``, each summed over the batch and
divided by the batch size, boxes normalised (cx, cy, w, h) on the padded canvas, GIoU on xyxy.
LeViLM: cross-entropy over the proposals' scores, the target being the proposal with the largest IoU
with the ground truth when that IoU is at least 0.5; samples without such a proposal are skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou

from skvg.boxes import cxcywh_to_xyxy

__all__ = ["grounding_loss", "proposal_targets", "matching_loss"]


def grounding_loss(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """pred, target: (B, 4) normalised (cx, cy, w, h) -> {"loss", "l1", "giou"} (batch means)."""
    if pred.shape != target.shape or pred.shape[-1] != 4:
        raise ValueError(
            f"pred and target must both be (B, 4), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    batch = pred.shape[0]
    l1 = F.l1_loss(pred, target, reduction="sum") / batch
    giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target)))
    giou_loss = (1 - giou).sum() / batch
    return {"loss": l1 + giou_loss, "l1": l1, "giou": giou_loss}


def proposal_targets(boxes: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, N, 4) proposals, (B, 4) ground truth (xyxy) -> (B,) index of the best proposal, -1 when
    no proposal reaches ``threshold`` IoU."""
    out = []
    for props, box in zip(boxes, gt):
        ious = box_iou(props.float(), box.float().unsqueeze(0))[:, 0]
        best = int(ious.argmax())
        out.append(best if float(ious[best]) >= threshold else -1)
    return torch.tensor(out, dtype=torch.long, device=boxes.device)


def matching_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over samples with a positive proposal (0 with a gradient path if none)."""
    keep = targets >= 0
    if not bool(keep.any()):
        return scores.sum() * 0.0
    return F.cross_entropy(scores[keep], targets[keep])
