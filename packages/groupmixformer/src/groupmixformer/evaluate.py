"""Top-1 / top-5 accuracy and cross-entropy of a classifier, and of a checkpoint on a folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from papers_shared.progress import progress_bar

__all__ = ["evaluate_classifier", "evaluate_checkpoint"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%), mean cross-entropy and the image count of ``model`` on
    ``loader`` (batches of images (B, 3, H, W) and labels (B,)), in eval mode."""
    model.eval()
    correct1 = correct5 = 0
    loss_sum = 0.0
    count = 0
    for images, targets in progress_bar(loader, enabled=progress, desc="eval", leave=False):
        images, targets = images.to(device), targets.to(device)
        logits = model(images).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        count += len(targets)
    denominator = max(count, 1)
    return {
        "top1": 100 * correct1 / denominator,
        "top5": 100 * correct5 / denominator,
        "loss": loss_sum / denominator,
        "count": count,
    }


def _model_from_run_folder(folder: Path) -> tuple[str, dict[str, Any], Path]:
    """(variant, config overrides, weights file) of a folder written by ``groupmixformer train``."""
    config_file, weights = folder / "config.json", folder / "model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"{folder} is not a finished training run (expected config.json and "
            f"model.safetensors, written by `groupmixformer train`)"
        )
    task = json.loads(config_file.read_text())["task"]
    overrides = dict(task.get("model_overrides", {}))
    if task.get("drop_path_rate") is not None:
        overrides["drop_path_rate"] = task["drop_path_rate"]
    return task["model"], overrides, weights


def evaluate_checkpoint(
    checkpoint: str | Path,
    val_dir: str | Path,
    *,
    model: str = "small",
    model_overrides: dict[str, Any] | None = None,
    img_size: int = 224,
    batch_size: int = 64,
    workers: int = 4,
    device: str = "auto",
    progress: bool | None = None,
    trust_checkpoint: bool = False,
) -> dict[str, float]:
    """Top-1/top-5 of a checkpoint on ``<val_dir>/<class>/...`` with the eval transform (resize
    img_size/0.875 bicubic, center crop). ``checkpoint``: a released ``.pth`` file (``model``
    names its variant), or a run folder of ``groupmixformer train`` (variant read from it).
    The class count is read from the weights."""
    from groupmixformer.convert import load_checkpoint
    from groupmixformer.data import build_transform, image_folder
    from groupmixformer.models import create_groupmixformer
    from papers_shared.checkpoint import read_state_dict

    path = Path(checkpoint)
    overrides = dict(model_overrides or {})
    if path.is_dir():
        model, overrides, path = _model_from_run_folder(path)
    state = read_state_dict(path, trust_checkpoint=trust_checkpoint)
    if "head.weight" not in state:
        raise ValueError(f"{path} has no classifier (head.weight); cannot evaluate top-k")
    num_classes = state["head.weight"].shape[0]
    net = create_groupmixformer(model, num_classes=num_classes, **overrides)
    load_checkpoint(net, path, trust_checkpoint=trust_checkpoint)
    dataset = image_folder(val_dir, build_transform(img_size, is_training=False))
    if len(dataset.classes) > num_classes:
        raise ValueError(
            f"{val_dir} has {len(dataset.classes)} classes but the checkpoint predicts {num_classes}"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    return evaluate_classifier(net.to(device), loader, device, progress)
