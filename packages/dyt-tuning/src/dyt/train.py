"""DyT training: what is specific to the paper, as a ``papers_shared.trainer.TrainTask``.

The task holds the model (a frozen timm backbone converted to DyT), the DyT objective (paper
Eq. 6-8: CE, complete-model CE, self-distillation KL and the rate loss), AdamW on the trainable
tensors, the per-iteration warm-up + half-cosine schedule, the data and the evaluation (top-1,
mean per-class accuracy, eval activation and GFLOPs from the real masks). The loop, DDP,
precision, checkpoint/resume, run-folder rules and non-finite handling are the shared trainer's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dyt.config import TrainConfig
from dyt.losses import DyTLoss
from dyt.models.dispatch import forward_dyt
from papers_shared.progress import progress_bar
from papers_shared.trainer import StepOutput, Trainer, TrainerConfig, TrainResult, TrainTask

__all__ = [
    "DyTTask",
    "StudentWithComplete",
    "EvalResult",
    "build_model",
    "cosine_lr",
    "evaluate",
    "train",
]

logger = logging.getLogger(__name__)


class StudentWithComplete(nn.Module):
    """One forward running the dispatched student and the complete model (DDP needs one call).

    ``model`` is the DyT network; the state-dict keys of this module are ``model.<its keys>``.
    """

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
    """timm ViT or Swin (timm weights, ``cfg.backbone_checkpoint`` or random), converted to DyT."""
    import timm
    from timm.models.swin_transformer import SwinTransformer

    from dyt.convert import load_backbone
    from dyt.models.dyt_swin import convert_swin
    from dyt.models.dyt_vit import convert_vit
    from dyt.models.video import convert_vit_to_video

    if not cfg.pretrained and not cfg.backbone_checkpoint:
        logger.warning(
            "no pre-trained backbone (pretrained=False, no backbone_checkpoint): DyT adapts a "
            "pre-trained ViT (the paper uses IN-21K ViT-B/16), so a random backbone trains "
            "adapters on random features"
        )
    backbone = timm.create_model(
        cfg.model, pretrained=cfg.pretrained, img_size=cfg.img_size, num_classes=num_classes,
        **cfg.model_overrides,
    )  # fmt: skip
    if isinstance(backbone, SwinTransformer):
        if cfg.num_frames > 0:
            raise ValueError("the video model needs a ViT backbone, got a Swin")
        model: nn.Module = convert_swin(
            backbone, cfg.dyt, num_classes=num_classes, head_init_std=cfg.head_init_std
        )
    elif cfg.num_frames > 0:
        model = convert_vit_to_video(
            backbone, cfg.dyt, num_classes=num_classes, num_frames=cfg.num_frames,
            head_init_std=cfg.head_init_std,
        )  # fmt: skip
    else:
        model = convert_vit(
            backbone, cfg.dyt, num_classes=num_classes, head_init_std=cfg.head_init_std
        )
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
    """Mean per-image (video: per view) GFLOPs of the path that ran: packed eval from the real
    masks, or the complete cost on the dense path (paper convention)."""
    num_images: int
    mean_class_accuracy: float = float("nan")
    """Mean of the per-class accuracies (the metric for Flowers102, Aircraft and Pets)."""
    path: str = "packed"
    """"packed" (active tokens only) or "dense" (every token computed, masks applied)."""


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _flops(model: nn.Module, token_select: torch.Tensor, active: torch.Tensor, packed: bool):
    """FLOPs of each image of a batch: from its masks (packed) or the complete cost (dense)."""
    from timm.models.swin_transformer import SwinTransformer

    from dyt.flops import flops_from_masks

    batch = token_select.shape[0]
    if isinstance(model, SwinTransformer):
        from dyt.models.dyt_swin import swin_flops

        if not packed:
            return [swin_flops(model).total] * batch
        return [swin_flops(model, row).total for row in active]
    if not packed:
        token_select = torch.ones_like(token_select)
    return flops_from_masks(model, token_select).tolist()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    sparse: bool | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """Top-1, mean per-class accuracy, eval activation and GFLOPs (reduced over DDP ranks).

    ``sparse=False`` runs the dense masked path, whose cost is the complete model's; the
    reported GFLOPs follow the path that ran.
    """
    from dyt.models.dispatch import get_dyt_config

    model.eval()
    packed = get_dyt_config(model).sparse_inference if sparse is None else sparse
    num_classes = int(vars(model)["num_classes"])
    correct = count = active_sum = flops_sum = 0.0
    token_slots = 0.0
    class_hits = class_totals = torch.zeros(num_classes, dtype=torch.float64)
    for images, targets in progress_bar(loader, enabled=progress, desc="eval", leave=False):
        images, targets = images.to(device), targets.to(device)
        views = 1
        if images.dim() == 6:  # video test views (B, V, 3, T, H, W): average logits over views
            batch, views = images.shape[:2]
            logits, aux = forward_dyt(model, images.flatten(0, 1), sparse=packed)
            logits = logits.view(batch, views, -1).mean(1)
        else:
            logits, aux = forward_dyt(model, images, sparse=packed)
        hits = logits.argmax(-1) == targets
        correct += float(hits.sum())
        count += float(targets.numel())
        class_totals = class_totals + targets.cpu().bincount(minlength=num_classes)
        class_hits = class_hits + targets[hits].cpu().bincount(minlength=num_classes)
        active = aux["token_select"].squeeze(-1).sum(-1)
        active_sum += float(active.sum())
        token_slots += float(aux["token_select"].numel())
        flops = _flops(model, aux["token_select"], aux["active_per_block"], packed)
        flops_sum += sum(flops) / views
    reduced = _all_reduce_sum(
        [
            correct,
            count,
            active_sum,
            token_slots,
            flops_sum,
            *class_hits.tolist(),
            *class_totals.tolist(),
        ],
        device,
    )
    correct, count, active_sum, token_slots, flops_sum = reduced[:5]
    class_hits = torch.tensor(reduced[5 : 5 + num_classes])
    class_totals = torch.tensor(reduced[5 + num_classes :])
    if count == 0:
        raise ValueError("evaluation set is empty")
    present = class_totals > 0
    return EvalResult(
        accuracy=correct / count,
        activation=active_sum / token_slots,
        gflops=flops_sum / count / 1e9,
        num_images=int(count),
        mean_class_accuracy=float((class_hits[present] / class_totals[present]).mean()),
        path="packed" if packed else "dense",
    )


def _task_folder(cfg: TrainConfig) -> Path:
    root = Path(cfg.data_root)
    if (root / f"{cfg.train_split}.txt").exists():
        return root
    return root / cfg.task


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, int]:
    """(train set, eval set, number of classes) from ``cfg``: VTAB-1K folders or clip lists."""
    if cfg.num_frames > 0:
        from dyt.data.video import VideoClipDataset

        root = Path(cfg.data_root)
        train_set = VideoClipDataset(root / f"{cfg.train_split}.txt", root, True, cfg.num_frames,
                                     img_size=cfg.img_size, protocol=cfg.video_protocol)  # fmt: skip
        eval_set = VideoClipDataset(root / f"{cfg.eval_split}.txt", root, False, cfg.num_frames,
                                    img_size=cfg.img_size, protocol=cfg.video_protocol)  # fmt: skip
        return train_set, eval_set, max(label for _, label in train_set.items) + 1
    from dyt.data.vtab import VTABFolder, image_transform

    folder = _task_folder(cfg)
    train_set = VTABFolder(folder, cfg.train_split, image_transform(cfg.img_size, cfg.augment))
    eval_set = VTABFolder(
        folder, cfg.eval_split, image_transform(cfg.img_size, cfg.augment, train=False)
    )
    return train_set, eval_set, train_set.num_classes


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class DyTTask(TrainTask):
    """DyT fine-tuning of one task (paper Sec. 3-4) for ``papers_shared.trainer.Trainer``."""

    name = "dyt"

    def __init__(
        self,
        cfg: TrainConfig,
        train_set: Dataset | None = None,
        eval_set: Dataset | None = None,
        num_classes: int | None = None,
    ) -> None:
        if train_set is None:
            train_set, built_eval, built_classes = build_datasets(cfg)
            eval_set = eval_set if eval_set is not None else built_eval
            num_classes = num_classes or built_classes
        if num_classes is None:
            raise ValueError("num_classes is required when passing datasets")
        self.cfg = cfg
        self.train_set = train_set
        self.eval_set = eval_set if eval_set is not None else train_set
        self.num_classes = num_classes
        self.criterion = DyTLoss(cfg.dyt.rate, cfg.alpha)

    def config_dict(self) -> dict[str, Any]:
        # the epoch count is the trainer's (it may grow on resume)
        return {k: v for k, v in self.cfg.to_dict().items() if k != "epochs"}

    def build_model(self) -> nn.Module:
        return StudentWithComplete(build_model(self.cfg, self.num_classes), self.cfg.use_complete)

    def peak_lr(self) -> float:
        """The paper's peak rate: absolute (VTAB) or base x global batch / 256."""
        return self.cfg.lr * (self.cfg.batch_size / 256 if self.cfg.lr_is_base else 1.0)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=self.peak_lr(), weight_decay=self.cfg.weight_decay)

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
    ) -> torch.optim.lr_scheduler.LambdaLR:
        if self.cfg.warmup_epochs > epochs:
            raise ValueError(
                f"warmup_epochs (--warmup-epochs {self.cfg.warmup_epochs}) exceeds the number of "
                f"epochs (--epochs {epochs})"
            )
        total, warmup = epochs * steps_per_epoch, self.cfg.warmup_epochs * steps_per_epoch
        peak = self.peak_lr()

        def factor(step: int) -> float:
            return cosine_lr(step, total, warmup, peak, self.cfg.min_lr) / peak

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def train_dataloader(self) -> DataLoader:
        world, _ = _world()
        if self.cfg.batch_size % world:
            raise ValueError(
                f"batch_size {self.cfg.batch_size} must divide by the number of processes {world}"
            )
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size // world,
            shuffle=True,
            num_workers=self.cfg.num_workers,
        )

    def training_step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        images, targets = batch
        logits, aux, complete = model(images)
        losses = self.criterion(logits, targets, aux["token_select"], complete)
        metrics = {k: v for k, v in losses.as_floats().items() if k != "total"}
        return StepOutput(loss=losses.total, metrics=metrics)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        net = model.model if isinstance(model, StudentWithComplete) else model
        world, rank = _world()
        sampler = (
            DistributedSampler(self.eval_set, world, rank, shuffle=False) if world > 1 else None
        )
        loader = DataLoader(
            self.eval_set,
            batch_size=max(1, self.cfg.batch_size // world),
            sampler=sampler,
            num_workers=self.cfg.num_workers,
        )
        device = next(net.parameters()).device
        result = evaluate(net, loader, device)
        return {
            "eval_accuracy": result.accuracy,
            "eval_mean_class_accuracy": result.mean_class_accuracy,
            "eval_activation": result.activation,
            "eval_gflops": result.gflops,
        }


def train(
    cfg: TrainConfig,
    trainer_config: TrainerConfig,
    train_set: Dataset | None = None,
    eval_set: Dataset | None = None,
    num_classes: int | None = None,
) -> TrainResult:
    """Train DyT with the full objective on the shared trainer.

    Datasets default to the VTAB-1K folder ``data_root/task`` (or clip lists for video); pass
    ``train_set`` / ``eval_set`` (yielding ``(image (3, H, W), label)``) and ``num_classes`` to
    train on anything else. ``trainer_config.epochs`` should equal ``cfg.epochs`` (the schedule
    length is taken from the trainer).
    """
    task = DyTTask(cfg, train_set, eval_set, num_classes)
    return Trainer(task, trainer_config).fit()
