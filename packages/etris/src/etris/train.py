"""ETRIS training as a TrainTask of papers_shared's trainer (what is specific to the paper only).

Adam on the trainable parameters (Bridger, neck, decoder, projector, positional embeddings),
lr 1e-4, no weight decay, MultiStepLR (milestone epoch 35, gamma 0.1) stepped by epoch, per-pixel
BCE. Validation: mIoU / oIoU / Pr@X on the validation split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from etris.config import TrainConfig
from etris.evaluate import evaluate_model
from etris.losses import etris_loss
from etris.models.etris import ETRIS
from papers_shared.trainer import StepOutput, TrainTask

__all__ = ["ETRISTask", "build_dataset", "blind_ids"]

logger = logging.getLogger(__name__)


def blind_ids(word_len: int) -> torch.Tensor:
    """Token ids of the empty sentence (SOT, EOT, padding): the text-blind input. -> (1, L)."""
    from etris.data.transforms import tokenize

    return tokenize("", word_len)


def build_dataset(cfg: TrainConfig, split: str, mode: str, seed: int = 0) -> Dataset:
    """The dataset a TrainConfig names: shapes (generated), RefCOCO JSON or LMDB layout."""
    model = cfg.model
    if cfg.dataset == "shapes":
        from etris.data.shapes import ShapesDataset

        is_train = mode == "train"
        return ShapesDataset(
            cfg.shapes_train if is_train else cfg.shapes_val,
            size=model.image_size,
            seed=seed if is_train else seed + 10_000,
            word_len=model.word_len,
        )
    if cfg.data_format == "lmdb":
        from etris.data.refer import RefLmdbDataset

        path = Path(cfg.data_root) / "lmdb" / cfg.dataset / f"{split}.lmdb"
        return RefLmdbDataset(path, model.image_size, model.word_len, mode)
    from etris.data.refer import RefJsonDataset

    return RefJsonDataset(
        cfg.data_root, cfg.dataset, split, model.image_size, model.word_len, mode, cfg.image_dir
    )


class ETRISTask(TrainTask):
    """One ETRIS training run (any backbone, any dataset the config names)."""

    name = "etris"

    def __init__(self, cfg: TrainConfig, text_blind: bool = False, seed: int = 0) -> None:
        self.cfg = cfg
        self.text_blind = text_blind
        self.seed = seed
        self._val: Dataset | None = None
        self._steps_per_epoch = 1

    def config_dict(self) -> dict[str, Any]:
        return {"train": self.cfg.to_dict(), "text_blind": self.text_blind, "data_seed": self.seed}

    def build_model(self) -> ETRIS:
        torch.manual_seed(self.seed)
        return ETRIS(self.cfg.model)

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """MultiStepLR by epoch, expressed per optimizer step (the trainer steps it per step)."""
        milestones, gamma = self.cfg.milestones, self.cfg.gamma
        per_epoch = max(1, steps_per_epoch)

        def factor(step: int) -> float:
            epoch = step // per_epoch
            return gamma ** sum(epoch >= m for m in milestones)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def train_dataloader(self) -> DataLoader:
        data: Any = build_dataset(self.cfg, self.cfg.train_split, "train", self.seed)
        shapes = self.cfg.dataset == "shapes"
        return DataLoader(
            data,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            drop_last=len(data) >= self.cfg.batch_size,
            num_workers=0 if shapes else self.cfg.num_workers,
        )

    def training_step(self, model: torch.nn.Module, batch: Any, step: int) -> StepOutput:
        ids = batch["ids"]
        if self.text_blind:
            ids = blind_ids(ids.shape[1]).to(ids.device).expand_as(ids)
        logits = model(batch["image"], ids)
        return StepOutput(etris_loss(logits, batch["mask"]))

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        from etris.data.refer import collate_eval

        if self._val is None:
            self._val = build_dataset(self.cfg, self.cfg.val_split, "eval", self.seed)
        data: Any = self._val
        if self.cfg.max_val_samples is not None:
            n = min(self.cfg.max_val_samples, len(data))
            data = torch.utils.data.Subset(data, range(n))
        loader = DataLoader(
            data,
            batch_size=min(self.cfg.batch_size, 64),
            collate_fn=None if self.cfg.dataset == "shapes" else collate_eval,
        )
        device = next(model.parameters()).device
        blind = blind_ids(self.cfg.model.word_len) if self.text_blind else None
        metrics = evaluate_model(model, loader, device, text_blind_ids=blind)
        return {f"val_{k}": v for k, v in metrics.items()}
