"""ImageNet-style training and evaluation with the released recipe (timm factories).

Runs as one process or unchanged under ``torchrun`` (DDP; gloo on CPU, NCCL on GPU). Recipe:
AdamW (0.9, 0.999), eps 1e-8, wd 0.05 except 1-D params and biases; lr 5e-4 x batch/512 with
20 warmup epochs from 5e-7 x batch/512 and per-iteration cosine to 5e-6 x batch/512; Mixup 0.8 /
CutMix 1.0 with label smoothing 0.1 in the soft targets; grad clip 5.0.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from groupmixformer.data import build_transform, image_folder
from groupmixformer.models import GroupMixFormer, create_groupmixformer
from papers_shared.checkpoint import unwrap_state_dict
from papers_shared.distributed import (
    DistContext,
    all_reduce_mean,
    autocast,
    cleanup_distributed,
    init_distributed,
    unwrap_model,
    wrap_ddp,
)
from papers_shared.progress import progress_bar
from papers_shared.runs import write_metrics
from papers_shared.seeding import seed_everything

__all__ = ["TrainConfig", "train", "evaluate", "evaluate_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training run; defaults are the release's ImageNet-1k recipe for one process of 8."""

    data_dir: Path  # holds train/<class>/... and val/<class>/...
    output_dir: Path = Path("runs/groupmixformer/train")
    model: str = "small"  # miny | tiny | small | base | large
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # config overrides, e.g. embed_dims
    drop_path_rate: float | None = None  # None: the variant's default
    epochs: int = 300
    warmup_epochs: int = 20
    batch_size: int = 64  # per process
    base_lr: float = 5e-4  # per 512 images; scaled linearly by the total batch
    warmup_lr: float = 5e-7
    min_lr: float = 5e-6
    weight_decay: float = 0.05
    clip_grad: float = 5.0
    img_size: int = 224
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    re_prob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    workers: int = 4
    seed: int = 0
    amp: bool = True  # bf16 autocast on GPU; CPU runs stay fp32
    max_steps_per_epoch: int | None = None  # for smoke tests
    resume: Path | None = None
    device: str | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.output_dir = Path(self.output_dir)
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(
                f"batch_size must be even and >= 2 (Mixup pairs), got {self.batch_size}"
            )
        if not 0 <= self.warmup_epochs <= self.epochs or self.epochs < 1:
            raise ValueError(
                f"need 1 <= epochs and 0 <= warmup_epochs <= epochs, got {self.epochs}, "
                f"{self.warmup_epochs}"
            )

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def _loader(dataset, batch_size: int, ctx: DistContext, *, train: bool, workers: int, seed: int):
    sampler = (
        DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=train, seed=seed)
        if ctx.is_distributed
        else None
    )
    generator = torch.Generator().manual_seed(seed + ctx.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=train,
        generator=generator,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, progress: bool | None = None
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy, summed over all ranks."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)  # correct@1, correct@5, loss sum, count
    for images, targets in progress_bar(loader, enabled=progress, desc="eval", leave=False):
        images, targets = images.to(device), targets.to(device)
        with autocast(device):
            logits = model(images).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        totals += torch.tensor(
            [
                hits[:, 0].sum().item(),
                hits.any(dim=1).sum().item(),
                nn.functional.cross_entropy(logits, targets, reduction="sum").item(),
                len(targets),
            ],
            dtype=torch.float64,
        )
    if dist.is_available() and dist.is_initialized():
        reduced = totals.to(device) if dist.get_backend() == "nccl" else totals
        dist.all_reduce(reduced)
        totals = reduced.cpu()
    count = max(totals[3].item(), 1.0)
    return {
        "top1": 100 * totals[0].item() / count,
        "top5": 100 * totals[1].item() / count,
        "loss": totals[2].item() / count,
        "count": int(totals[3].item()),
    }


def _build_model(config: TrainConfig, num_classes: int) -> GroupMixFormer:
    overrides = dict(config.model_kwargs)
    if config.drop_path_rate is not None:
        overrides["drop_path_rate"] = config.drop_path_rate
    return create_groupmixformer(config.model, num_classes=num_classes, **overrides)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train and evaluate every epoch; rank 0 writes checkpoints and ``metrics.json``."""

    ctx = init_distributed(config.device)
    try:
        return _train(config, ctx)
    finally:
        cleanup_distributed()  # after _train returned: no DDP wrapper is alive any more


def _train(config: TrainConfig, ctx: DistContext) -> dict[str, Any]:
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    seed_everything(config.seed + ctx.rank)
    train_set = image_folder(
        config.data_dir / "train",
        build_transform(
            config.img_size,
            is_training=True,
            auto_augment=config.auto_augment,
            re_prob=config.re_prob,
        ),
    )
    val_set = image_folder(
        config.data_dir / "val", build_transform(config.img_size, is_training=False)
    )
    num_classes = len(train_set.classes)
    train_loader = _loader(
        train_set, config.batch_size, ctx, train=True, workers=config.workers, seed=config.seed
    )
    val_loader = _loader(
        val_set, config.batch_size, ctx, train=False, workers=config.workers, seed=config.seed
    )
    if len(train_loader) == 0:
        raise ValueError(
            f"{len(train_set)} training images cannot fill one batch of {config.batch_size} "
            f"per process on {ctx.world_size} process(es)"
        )
    model = _build_model(config, num_classes).to(ctx.device)
    if ctx.is_distributed and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # as the release
    ddp_model = wrap_ddp(model, ctx)

    scale = config.batch_size * ctx.world_size / 512
    optimizer = create_optimizer_v2(
        model,
        "adamw",
        lr=config.base_lr * scale,
        weight_decay=config.weight_decay,
        eps=1e-8,
        betas=(0.9, 0.999),
    )
    steps = (
        len(train_loader)
        if config.max_steps_per_epoch is None
        else min(len(train_loader), config.max_steps_per_epoch)
    )
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=(config.epochs - config.warmup_epochs) * steps,
        lr_min=config.min_lr * scale,
        warmup_lr_init=config.warmup_lr * scale,
        warmup_t=config.warmup_epochs * steps,
        warmup_prefix=True,
        cycle_limit=1,
        t_in_epochs=False,
    )
    use_mixup = config.mixup > 0 or config.cutmix > 0
    mixup = (
        Mixup(
            mixup_alpha=config.mixup,
            cutmix_alpha=config.cutmix,
            prob=1.0,
            switch_prob=0.5,
            mode="batch",
            label_smoothing=config.smoothing,
            num_classes=num_classes,
        )
        if use_mixup
        else None
    )
    criterion = (
        SoftTargetCrossEntropy() if use_mixup else LabelSmoothingCrossEntropy(config.smoothing)
    )
    start_epoch = 0
    if config.resume is not None:
        state = torch.load(config.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(unwrap_state_dict(state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        start_epoch = int(state["epoch"]) + 1
        logger.info("resumed from %s at epoch %d", config.resume, start_epoch)

    if ctx.is_main:
        config.output_dir.mkdir(parents=True, exist_ok=True)
        (config.output_dir / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    history: list[dict[str, float]] = []
    for epoch in range(start_epoch, config.epochs):
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        ddp_model.train()
        losses = []
        bar = progress_bar(
            train_loader,
            enabled=config.progress and ctx.is_main,
            desc=f"epoch {epoch}",
            total=steps,
        )
        for step, (images, targets) in enumerate(bar):
            if step >= steps:
                break
            images, targets = images.to(ctx.device), targets.to(ctx.device)
            if mixup is not None:
                images, targets = mixup(images, targets)
            with autocast(ctx.device, enabled=config.amp):
                loss = criterion(ddp_model(images), targets)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            scheduler.step_update(epoch * steps + step + 1)
            losses.append(loss.item())
        metrics = {f"val_{k}": v for k, v in evaluate(ddp_model, val_loader, ctx.device).items()}
        metrics |= {
            "epoch": epoch,
            "train_loss": all_reduce_mean(sum(losses) / max(len(losses), 1)),
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(metrics)
        logger.info("epoch %d: %s", epoch, metrics)
        if ctx.is_main:
            torch.save(
                {
                    "model": unwrap_model(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                },
                config.output_dir / "checkpoint.pth",
            )
            write_metrics(config.output_dir, {"history": history, "world_size": ctx.world_size})
    return {"history": history, "world_size": ctx.world_size, "num_classes": num_classes}


def evaluate_checkpoint(
    checkpoint: str | Path,
    val_dir: str | Path,
    *,
    model: str = "small",
    model_kwargs: dict[str, Any] | None = None,
    img_size: int = 224,
    batch_size: int = 64,
    workers: int = 4,
    device: str | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Top-1/top-5 of a checkpoint (released or ours) on ``<val_dir>/<class>/...`` with the eval
    transform (resize img_size/0.875 bicubic, center crop). Class count is taken from the file."""
    from groupmixformer.checkpoint import load_checkpoint
    from papers_shared.checkpoint import read_state_dict

    state = read_state_dict(checkpoint)
    if "head.weight" not in state:
        raise ValueError(f"{checkpoint} has no classifier (head.weight); cannot evaluate top-k")
    num_classes = state["head.weight"].shape[0]
    net = create_groupmixformer(model, num_classes=num_classes, **(model_kwargs or {}))
    load_checkpoint(net, checkpoint)
    dataset = image_folder(val_dir, build_transform(img_size, is_training=False))
    if len(dataset.classes) > num_classes:
        raise ValueError(
            f"{val_dir} has {len(dataset.classes)} classes but the checkpoint predicts {num_classes}"
        )
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    return evaluate(net.to(torch_device), loader, torch_device, progress)
