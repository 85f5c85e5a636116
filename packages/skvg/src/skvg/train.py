"""Training KeViLI and LeViLM on :mod:`papers_shared.trainer` (only the paper-specific parts here).

Optimiser (TransVG): AdamW, weight decay 1e-4, lr 1e-4 for new modules and 1e-5 for the backbone,
the visual encoder and the text encoder; the lr is divided by 10 at ``lr_drop_epoch``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from papers_shared.trainer import StepOutput, TrainTask
from skvg.augment import Letterbox, unletterbox
from skvg.boxes import xyxy_to_release
from skvg.config import KeViLIConfig, LeViLMConfig, TrainConfig
from skvg.evaluate import iou
from skvg.losses import grounding_loss, matching_loss, proposal_targets

__all__ = ["KeViLITask", "LeViLMTask", "predict_boxes", "param_groups"]

PRETRAINED_PREFIXES = ("visumodel.", "textmodel.", "knowmodel.", "backbone.")


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    pretrained, new = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (pretrained if name.startswith(PRETRAINED_PREFIXES) else new).append(param)
    return [
        {"params": new, "lr": cfg.lr},
        {"params": pretrained, "lr": cfg.lr_pretrained},
    ]


@torch.no_grad()
def predict_boxes(model: nn.Module, loader: Any, mode: str = "kevili") -> dict[int, list[float]]:
    """index -> predicted [x1, y1, x2, y2] in original-image pixels."""
    model.eval()
    device = next(model.parameters()).device
    out: dict[int, list[float]] = {}
    for batch in loader:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        if mode == "kevili":
            pred = model(
                batch["pixel_values"],
                batch["pixel_mask"],
                batch["query_ids"],
                batch["query_mask"],
                batch["know_ids"],
                batch["know_mask"],
            )
            for i, p in enumerate(pred):
                lb = Letterbox(
                    float(batch["scale"][i]),
                    int(batch["pad"][i, 0]),
                    int(batch["pad"][i, 1]),
                    batch["pixel_values"].shape[-1],
                )
                out[int(batch["index"][i])] = unletterbox(p, lb)
        else:
            scores = model(
                batch["pixel_values"],
                batch["boxes"],
                batch["text_ids"],
                batch["text_mask"],
                batch["entity_mask"],
            )
            best = scores.argmax(dim=1)
            for i, b in enumerate(best):
                box = batch["boxes"][i, b].float()
                scale = float(batch["scale"][i])
                px, py = float(batch["pad"][i, 0]), float(batch["pad"][i, 1])
                x1, y1, x2, y2 = box.tolist()
                out[int(batch["index"][i])] = [
                    (x1 - px) / scale,
                    (y1 - py) / scale,
                    (x2 - px) / scale,
                    (y2 - py) / scale,
                ]
    return out


def accuracy(pred: dict[int, list[float]], records: Any, convention: str = "center") -> float:
    from skvg.boxes import release_to_xyxy

    hits = [
        iou(pred[i], release_to_xyxy(r["bbox"], convention)) >= 0.5 if i in pred else False
        for i, r in enumerate(records)
    ]
    return sum(hits) / len(hits) if hits else float("nan")


class _GroundingTask(TrainTask):
    """What KeViLI and LeViLM training share: TransVG's AdamW groups and StepLR, loaders, eval."""

    mode = "kevili"

    def __init__(
        self,
        model_cfg: KeViLIConfig | LeViLMConfig,
        train_cfg: TrainConfig,
        build: Callable[[], nn.Module],
        train_loader: Callable[[], Any],
        val_loader: Callable[[], Any] | None = None,
        val_records: Any = None,
    ) -> None:
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self._build, self._train_loader, self._val_loader = build, train_loader, val_loader
        self.val_records = val_records

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_cfg.to_dict(), "train": self.train_cfg.to_dict()}

    def build_model(self) -> nn.Module:
        return self._build()

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            param_groups(model, self.train_cfg), weight_decay=self.train_cfg.weight_decay
        )

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
    ) -> Any:
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, self.train_cfg.lr_drop_epoch * steps_per_epoch), gamma=0.1
        )

    def train_dataloader(self) -> Any:
        return self._train_loader()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self._val_loader is None or self.val_records is None:
            return {}
        preds = predict_boxes(model, self._val_loader(), self.mode)
        return {"val_acc@0.5": accuracy(preds, self.val_records)}


class KeViLITask(_GroundingTask):
    """L1 + GIoU on KeViLI (or TransVG with ``ke_layers=0``)."""

    name = "kevili"
    mode = "kevili"

    def training_step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        pred = model(
            batch["pixel_values"],
            batch["pixel_mask"],
            batch["query_ids"],
            batch["query_mask"],
            batch["know_ids"],
            batch["know_mask"],
        )
        losses = grounding_loss(pred, batch["target"])
        return StepOutput(
            losses["loss"],
            {"l1": float(losses["l1"].detach()), "giou": float(losses["giou"].detach())},
        )


class LeViLMTask(_GroundingTask):
    """Cross-entropy over proposals on LeViLM."""

    name = "levilm"
    mode = "levilm"

    def training_step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        scores = model(
            batch["pixel_values"],
            batch["boxes"],
            batch["text_ids"],
            batch["text_mask"],
            batch["entity_mask"],
        )
        targets = proposal_targets(batch["boxes"], batch["gt_xyxy"])
        loss = matching_loss(scores, targets)
        hit = (
            (scores.argmax(1) == targets).float()[targets >= 0].mean()
            if bool((targets >= 0).any())
            else torch.tensor(0.0)
        )
        return StepOutput(loss, {"train_top1": float(hit)})


def predictions_file(
    pred: dict[int, list[float]], convention: str = "center"
) -> list[dict[str, Any]]:
    """The evaluator's prediction format (release convention)."""
    return [
        {"index": i, "bbox": xyxy_to_release(box, convention)} for i, box in sorted(pred.items())
    ]
