"""The DyT trainer (VTAB-1K folders; runs unchanged under ``torchrun``, DDP on gloo or NCCL)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.distributed as dist
from timm.models.swin_transformer import SwinTransformer
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dyt.config import TrainConfig
from dyt.convert import load_backbone, save_adapter
from dyt.data.vtab import VTABFolder, image_transform
from dyt.flops import flops_from_masks
from dyt.losses import DyTLoss
from dyt.models.dispatch import forward_dyt
from dyt.models.dyt_swin import convert_swin, swin_flops
from dyt.models.dyt_vit import convert_vit
from dyt.models.video import convert_vit_to_video
from papers_shared.distributed import (
    DistContext,
    autocast,
    cleanup_distributed,
    init_distributed,
    unwrap_model,
    wrap_ddp,
)
from papers_shared.progress import progress_bar
from papers_shared.seeding import seed_everything

__all__ = [
    "StudentWithComplete",
    "build_model",
    "cosine_lr",
    "evaluate",
    "train",
    "EvalResult",
]

logger = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.pth"


class StudentWithComplete(nn.Module):
    """One forward running the dispatched student and the complete model (DDP needs one call)."""

    def __init__(self, model: nn.Module, use_complete: bool = True) -> None:
        super().__init__()
        self.model = model
        self.use_complete = use_complete

    def forward(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """images: (B, 3, H, W) -> (student logits, aux, complete logits or None)."""
        logits, aux = forward_dyt(self.model, images)
        complete = forward_dyt(self.model, images, complete=True)[0] if self.use_complete else None
        return logits, aux, complete


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """timm ViT or Swin (random or ``cfg.backbone_checkpoint``), converted to DyT, new head."""
    vit = timm.create_model(
        cfg.model, pretrained=False, img_size=cfg.img_size, num_classes=num_classes,
        **cfg.model_overrides,
    )  # fmt: skip
    if isinstance(vit, SwinTransformer):
        if cfg.num_frames > 0:
            raise ValueError("the video model needs a ViT backbone, got a Swin")
        model = convert_swin(vit, cfg.dyt, num_classes=num_classes, head_init_std=cfg.head_init_std)
    elif cfg.num_frames > 0:
        model = convert_vit_to_video(vit, cfg.dyt, num_classes=num_classes,
                                     num_frames=cfg.num_frames, head_init_std=cfg.head_init_std)  # fmt: skip
    else:
        model = convert_vit(vit, cfg.dyt, num_classes=num_classes, head_init_std=cfg.head_init_std)
    if cfg.backbone_checkpoint:
        load_backbone(model, cfg.backbone_checkpoint)
    return model


def cosine_lr(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Per-iteration schedule: linear warm-up to ``peak``, then half-cosine down to ``floor``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class EvalResult:
    accuracy: float
    activation: float
    """Mean eval-mask activation over images, layers and patch tokens."""
    gflops: float
    """Mean per-image (video: per view) GFLOPs from the real eval masks (paper convention)."""
    num_images: int
    mean_class_accuracy: float = float("nan")
    """Mean of the per-class accuracies (the metric for Flowers102, Aircraft and Pets)."""


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    sparse: bool | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """Top-1, mean per-class accuracy, eval activation and GFLOPs (reduced over DDP ranks)."""
    model.eval()
    correct = count = active_sum = flops_sum = 0.0
    token_slots = 0.0
    class_hits = class_totals = torch.zeros(model.num_classes, dtype=torch.float64)
    for images, targets in progress_bar(loader, enabled=progress, desc="eval", leave=False):
        images, targets = images.to(device), targets.to(device)
        views = 1
        if images.dim() == 6:  # video test views (B, V, 3, T, H, W): average logits over views
            batch, views = images.shape[:2]
            logits, aux = forward_dyt(model, images.flatten(0, 1), sparse=sparse)
            logits = logits.view(batch, views, -1).mean(1)
        else:
            logits, aux = forward_dyt(model, images, sparse=sparse)
        hits = logits.argmax(-1) == targets
        correct += float(hits.sum())
        count += float(targets.numel())
        class_totals = class_totals + targets.cpu().bincount(minlength=model.num_classes)
        class_hits = class_hits + targets[hits].cpu().bincount(minlength=model.num_classes)
        active = aux["token_select"].squeeze(-1).sum(-1)  # (B, L)
        active_sum += float(active.sum())
        token_slots += float(aux["token_select"].numel())
        if isinstance(model, SwinTransformer):
            flops = sum(swin_flops(model, row).total for row in aux["active_per_block"])
        else:
            flops = float(flops_from_masks(model, aux["token_select"]).sum())
        flops_sum += flops / views
    reduced = _all_reduce_sum(
        [correct, count, active_sum, token_slots, flops_sum, *class_hits, *class_totals], device
    )
    correct, count, active_sum, token_slots, flops_sum = reduced[:5]
    class_hits = torch.tensor(reduced[5 : 5 + model.num_classes])
    class_totals = torch.tensor(reduced[5 + model.num_classes :])
    if count == 0:
        raise ValueError("evaluation set is empty")
    present = class_totals > 0
    return EvalResult(
        accuracy=correct / count,
        activation=active_sum / token_slots,
        gflops=flops_sum / count / 1e9,
        num_images=int(count),
        mean_class_accuracy=float((class_hits[present] / class_totals[present]).mean()),
    )


def _task_folder(cfg: TrainConfig) -> Path:
    root = Path(cfg.data_root)
    if (root / f"{cfg.train_split}.txt").exists():
        return root
    return root / cfg.task


def _loader(dataset: Dataset, batch: int, ctx: DistContext, shuffle: bool, workers: int, seed: int):
    sampler = (
        DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=shuffle, seed=seed)
        if ctx.is_distributed
        else None
    )
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=False,
    )


def train(
    cfg: TrainConfig,
    progress: bool | None = None,
    train_set: Dataset | None = None,
    eval_set: Dataset | None = None,
    num_classes: int | None = None,
) -> dict[str, object]:
    """Train DyT with the full loss; returns the final metrics (written to ``output_dir``).

    Datasets default to the VTAB-1K folder ``data_root/task``; pass ``train_set`` / ``eval_set``
    (yielding ``(image (3, H, W), label)``) and ``num_classes`` to train on anything else.
    """
    ctx = init_distributed(cfg.device or None)
    try:
        return _train(cfg, ctx, progress, train_set, eval_set, num_classes)
    finally:
        cleanup_distributed()


def _train(cfg, ctx, progress, train_set, eval_set, num_classes) -> dict[str, object]:
    seed_everything(cfg.seed + ctx.rank)
    output = Path(cfg.output_dir)
    if train_set is None and cfg.num_frames > 0:
        from dyt.data.video import VideoClipDataset

        root = Path(cfg.data_root)
        train_set = VideoClipDataset(root / f"{cfg.train_split}.txt", root, True, cfg.num_frames,
                                     img_size=cfg.img_size, protocol=cfg.video_protocol)  # fmt: skip
        eval_set = VideoClipDataset(root / f"{cfg.eval_split}.txt", root, False, cfg.num_frames,
                                    img_size=cfg.img_size, protocol=cfg.video_protocol)  # fmt: skip
        num_classes = num_classes or max(label for _, label in train_set.items) + 1
    elif train_set is None:
        folder = _task_folder(cfg)
        train_set = VTABFolder(folder, cfg.train_split, image_transform(cfg.img_size, cfg.augment))
        eval_set = VTABFolder(
            folder, cfg.eval_split, image_transform(cfg.img_size, cfg.augment, train=False)
        )
        num_classes = num_classes or train_set.num_classes
    if num_classes is None:
        raise ValueError("num_classes is required when passing datasets")
    if eval_set is None:
        eval_set = train_set
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must divide by world size {ctx.world_size}")
    local_batch = cfg.batch_size // ctx.world_size
    train_loader = _loader(train_set, local_batch, ctx, True, cfg.num_workers, cfg.seed)
    eval_loader = _loader(eval_set, local_batch, ctx, False, cfg.num_workers, cfg.seed)

    model = build_model(cfg, num_classes).to(ctx.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    peak_lr = cfg.lr * (cfg.batch_size / 256 if cfg.lr_is_base else 1.0)
    optimizer = torch.optim.AdamW(trainable, lr=peak_lr, weight_decay=cfg.weight_decay)
    criterion = DyTLoss(cfg.dyt.rate, cfg.alpha)
    start_epoch = 0
    checkpoint_path = output / CHECKPOINT_FILE
    if cfg.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=ctx.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        logger.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)
    runner = wrap_ddp(StudentWithComplete(model, cfg.use_complete), ctx)

    steps_per_epoch = len(train_loader)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    step = start_epoch * steps_per_epoch
    history: list[dict[str, float]] = []
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        cfg.save(output / "train_config.json")
    final: dict[str, object] = {}
    best_accuracy = -1.0
    for epoch in range(start_epoch, cfg.epochs):
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        runner.train()
        sums: dict[str, float] = {}
        seen = 0
        started = time.perf_counter()
        for images, targets in progress_bar(
            train_loader, enabled=progress and ctx.is_main, desc=f"epoch {epoch}", leave=False
        ):
            lr = cosine_lr(step, total_steps, warmup_steps, peak_lr, cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, targets = images.to(ctx.device), targets.to(ctx.device)
            with autocast(ctx.device, enabled=cfg.mixed_precision):
                logits, aux, complete = runner(images)
            losses = criterion(logits, targets, aux["token_select"], complete)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            optimizer.step()
            for key, value in losses.as_floats().items():
                sums[key] = sums.get(key, 0.0) + value
            seen += 1
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        record = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
        record.update(epoch=epoch, lr=lr, seconds=time.perf_counter() - started)
        last_epoch = epoch == cfg.epochs - 1 or bool(cfg.max_steps and step >= cfg.max_steps)
        if (epoch + 1) % cfg.eval_every == 0 or last_epoch:
            result = evaluate(unwrap_model(runner).model, eval_loader, ctx.device, progress=False)
            record.update(
                eval_accuracy=result.accuracy,
                eval_mean_class_accuracy=result.mean_class_accuracy,
                eval_activation=result.activation,
                eval_gflops=result.gflops,
            )
            best_accuracy = max(best_accuracy, result.accuracy)
            record["best_eval_accuracy"] = best_accuracy
        history.append(record)
        if ctx.is_main:
            with (output / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                checkpoint_path,
            )
            save_adapter(model, output)
        logger.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in record.items()})
        final = record
        if last_epoch:
            break
    return final
