"""ImageNet-style training with the release's recipe, as a task of the shared trainer.

Only what is specific to GroupMixFormer lives here; the loop, DDP, precision, clipping, resume,
run-folder rules and non-finite-loss handling are ``papers_shared.trainer``'s. Recipe (the
release's ImageNet-1k one): AdamW (0.9, 0.999), eps 1e-8, weight decay 0.05 except 1-D
parameters and biases; lr 5e-4 x batch/512 with a linear warmup from 5e-7 x batch/512 and a
per-step cosine to 5e-6 x batch/512; Mixup 0.8 / CutMix 1.0 with label smoothing 0.1 in the soft
targets; grad clip 5.0 (``TrainerConfig.clip_grad_norm``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from groupmixformer.config import TrainConfig
from papers_shared.trainer import StepOutput, TrainTask

__all__ = ["GroupMixFormerTask", "warmup_cosine"]

logger = logging.getLogger(__name__)


def warmup_cosine(
    step: int, warmup_steps: int, total_steps: int, base_lr: float, warmup_lr: float, min_lr: float
) -> float:
    """The release's per-step learning rate (timm's CosineLRScheduler with ``warmup_prefix``):
    linear from ``warmup_lr`` over ``warmup_steps``, then a cosine from ``base_lr`` to ``min_lr``
    over the remaining steps."""
    if step < warmup_steps:
        return warmup_lr + step * (base_lr - warmup_lr) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class GroupMixFormerTask(TrainTask):
    """The release's ImageNet-1k recipe on ImageFolders ``<data_dir>/train`` and ``/val``."""

    name = "groupmixformer"

    def __init__(self, config: TrainConfig) -> None:
        from groupmixformer.data import build_transform, image_folder

        self.config = config
        self.train_set = image_folder(
            f"{config.data_dir}/train",
            build_transform(
                config.img_size,
                is_training=True,
                auto_augment=config.auto_augment,
                re_prob=config.re_prob,
            ),
        )
        self.val_set = image_folder(
            f"{config.data_dir}/val", build_transform(config.img_size, is_training=False)
        )
        self.num_classes = len(self.train_set.classes)
        self._mixup: Any = None
        self._criterion: nn.Module | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def build_model(self) -> nn.Module:
        from groupmixformer.models import create_groupmixformer

        overrides = dict(self.config.model_overrides)
        if self.config.drop_path_rate is not None:
            overrides["drop_path_rate"] = self.config.drop_path_rate
        model = create_groupmixformer(self.config.model, num_classes=self.num_classes, **overrides)
        if _world_size() > 1 and torch.cuda.is_available():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # as the release
        return model

    def _lr_scale(self) -> float:
        return self.config.batch_size * _world_size() / 512

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        from timm.optim._optim_factory import create_optimizer_v2

        return create_optimizer_v2(  # no decay for 1-D parameters and biases
            model,
            "adamw",
            lr=self.config.base_lr * self._lr_scale(),
            weight_decay=self.config.weight_decay,
            eps=1e-8,
            betas=(0.9, 0.999),
        )

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
    ) -> torch.optim.lr_scheduler.LambdaLR:
        scale = self._lr_scale()
        base, warmup, floor = (
            self.config.base_lr * scale,
            self.config.warmup_lr * scale,
            self.config.min_lr * scale,
        )
        warmup_steps = self.config.resolved_warmup_epochs(epochs) * steps_per_epoch
        total = epochs * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, warmup_steps, total, base, warmup, floor) / base,
        )

    def train_dataloader(self) -> DataLoader:
        if len(self.train_set) < self.config.batch_size:
            raise ValueError(
                f"{len(self.train_set)} training images cannot fill one batch of "
                f"{self.config.batch_size}"
            )
        return DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.config.workers,
            persistent_workers=self.config.workers > 0,
        )

    def _loss_parts(self) -> tuple[Any, nn.Module]:
        if self._criterion is None:
            from timm.data.mixup import Mixup
            from timm.loss.cross_entropy import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

            cfg = self.config
            if cfg.mixup > 0 or cfg.cutmix > 0:
                self._mixup = Mixup(
                    mixup_alpha=cfg.mixup,
                    cutmix_alpha=cfg.cutmix,
                    prob=1.0,
                    switch_prob=0.5,
                    mode="batch",
                    label_smoothing=cfg.smoothing,
                    num_classes=self.num_classes,
                )
                self._criterion = SoftTargetCrossEntropy()
            else:
                self._criterion = LabelSmoothingCrossEntropy(cfg.smoothing)
        assert self._criterion is not None
        return self._mixup, self._criterion

    def training_step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        images, targets = batch
        mixup, criterion = self._loss_parts()
        if mixup is not None:
            images, targets = mixup(images, targets)
        return StepOutput(criterion(model(images), targets))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from groupmixformer.evaluate import evaluate_classifier

        device = next(model.parameters()).device
        loader = DataLoader(
            self.val_set, batch_size=self.config.batch_size, num_workers=self.config.workers
        )
        scores = evaluate_classifier(model, loader, device)
        return {f"val_{k}": float(v) for k, v in scores.items()}
