"""Typed configurations: the DyT conversion config and the training presets of the paper."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DISPATCH_MODES",
    "DyTConfig",
    "TrainConfig",
    "TRAIN_PRESETS",
    "get_train_preset",
]

DISPATCH_MODES = ("mlp", "attn", "attn_mlp", "layer")
AdapterScale = float | Literal["learnable"]


@dataclass
class DyTConfig:
    """How :func:`dyt.convert_vit` turns a timm ViT into a DyT model (paper defaults: VTAB-1K)."""

    bottleneck: int = 8
    """Adapter bottleneck width d (paper: 8 on VTAB-1K, 64 on full image sets, video, segmentation)."""
    rate: float = 0.5
    """Target token activation rate r of the rate loss alpha * (mean(M) - r)^2."""
    adapter_scale: AdapterScale = 1.0
    """Fixed scalar s multiplying the adapter output (1.0 VTAB, 0.1 elsewhere) or "learnable"."""
    adapter_dropout: float = 0.1
    """Dropout inside the adapter, after the ReLU; only active in training."""
    adapter_layernorm: Literal["none", "in", "out"] = "none"
    """AdaptFormer's optional adapter LayerNorm; DyT uses none."""
    tau: float = 5.0
    """Gumbel-sigmoid temperature; it only scales the surrogate gradient, never the decision."""
    num_experts: int = 1
    """1: plain adapter. N > 1: the MoE adapter with N merged experts (paper's DyT-dagger, N=4)."""
    dispatch: Literal["mlp", "attn", "attn_mlp", "layer"] = "mlp"
    """Where the token dispatcher acts; only "mlp" (the paper's default) is in the released code."""
    sparse_inference: bool = True
    """In eval, gather the active tokens and run the MLP only on them (real skipping)."""

    def __post_init__(self) -> None:
        if not isinstance(self.bottleneck, int) or self.bottleneck < 1:
            raise ValueError(f"bottleneck must be a positive int, got {self.bottleneck!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must lie in [0, 1], got {self.rate}")
        if self.adapter_scale != "learnable" and not isinstance(self.adapter_scale, (int, float)):
            raise ValueError(
                f"adapter_scale must be a number or 'learnable', got {self.adapter_scale!r}"
            )
        if not 0.0 <= self.adapter_dropout < 1.0:
            raise ValueError(f"adapter_dropout must lie in [0, 1), got {self.adapter_dropout}")
        if self.adapter_layernorm not in ("none", "in", "out"):
            raise ValueError(
                f"adapter_layernorm must be 'none', 'in' or 'out', got {self.adapter_layernorm!r}"
            )
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if not isinstance(self.num_experts, int) or self.num_experts < 1:
            raise ValueError(f"num_experts must be an int >= 1, got {self.num_experts!r}")
        if self.dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, got {self.dispatch!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DyTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DyTConfig field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)


@dataclass
class TrainConfig:
    """What is specific to one DyT training run (defaults: the paper's VTAB-1K recipe). Device, precision, seed, run folder and resume belong to
    ``papers_shared.trainer.TrainerConfig``."""

    data_root: str = ""
    """VTAB-1K root holding one folder per task (or the task folder itself)."""
    task: str = "cifar"
    """VTAB-1K task folder name under ``data_root``."""
    model: str = "vit_base_patch16_224"
    """timm model name of the frozen backbone (a ViT or a Swin)."""
    pretrained: bool = False
    """Load timm's pre-trained weights for ``model`` (downloads from the Hugging Face Hub)."""
    backbone_checkpoint: str = ""
    """Pre-trained backbone weights file (e.g. timm's vit_base_patch16_224.orig_in21k)."""
    img_size: int = 224
    """Input resolution (images are resized to img_size x img_size)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Extra timm ``create_model`` arguments (e.g. a tiny width for smoke tests)."""
    dyt: DyTConfig = field(default_factory=DyTConfig)
    """The DyT conversion (bottleneck, rate, adapter scale, ...)."""
    num_frames: int = 0
    """> 0: video model (per-frame DyT + attentive pooling) on clip lists read with decord:
    ``data_root/<train_split>.txt`` and ``<eval_split>.txt``, lines ``relative/path label``."""
    video_protocol: Literal["k400", "ssv2"] = "k400"
    """Clip sampling: "k400" (decord, stride 16, 3 temporal test clips) or "ssv2" (PyAV, one
    frame per segment, RandAugment + RandomResizedCrop, 3 spatial test crops)."""
    augment: Literal["none", "rrc_flip"] = "none"
    """Image pipeline: "none" (VTAB: resize only) or "rrc_flip" (full image sets: random resized
    crop + flip; test resize 256/224 + centre crop)."""
    alpha: float = 2.0
    """Weight of the rate loss alpha * (mean(M) - r)^2 (paper Eq. 8)."""
    use_complete: bool = True
    """Train the complete model jointly: CE(complete) + KL(complete.detach() || student)."""
    epochs: int = 100
    """Training length; also the length of the learning-rate schedule."""
    warmup_epochs: int = 10
    """Linear warm-up epochs before the half-cosine decay."""
    batch_size: int = 64
    """Global batch size (split over the DDP ranks)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    lr_is_base: bool = False
    """If true, lr is a base rate scaled by global batch / 256 (full image sets, video)."""
    min_lr: float = 1e-5
    """Learning rate at the end of the cosine decay."""
    weight_decay: float = 1e-4
    """AdamW weight decay (on every trainable parameter)."""
    head_init_std: float = 0.01
    """Std of the trunc-normal initialisation of the new classifier head."""
    train_split: str = "train800val200"
    """Split / list file name for training."""
    eval_split: str = "test"
    """Split / list file name for evaluation."""
    num_workers: int = 2
    """DataLoader worker processes."""

    def __post_init__(self) -> None:
        if isinstance(self.dyt, dict):
            self.dyt = DyTConfig.from_dict(self.dyt)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if self.augment not in ("none", "rrc_flip"):
            raise ValueError(f"augment must be 'none' or 'rrc_flip', got {self.augment!r}")
        if self.video_protocol not in ("k400", "ssv2"):
            raise ValueError(
                f"video_protocol must be 'k400' or 'ssv2', got {self.video_protocol!r}"
            )
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(
                f"warmup_epochs (--warmup-epochs) must lie in [0, epochs (--epochs) = "
                f"{self.epochs}], got {self.warmup_epochs}"
            )
        if self.lr <= 0 or self.alpha < 0 or self.weight_decay < 0:
            raise ValueError(
                f"lr must be positive and alpha, weight_decay non-negative, got lr={self.lr}, "
                f"alpha={self.alpha}, weight_decay={self.weight_decay}"
            )
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON file: a TrainConfig, or a run's config.json (its "task" part)."""
        data = json.loads(Path(path).read_text())
        if set(data) == {"trainer", "task"}:
            data = data["task"]
        return cls.from_dict(data)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Paper, VTAB-1K: d=8, s=1, AdamW lr 1e-3 absolute, wd 1e-4, batch 64, 100 epochs,
    # 10 warm-up epochs then half-cosine to 1e-5, no augmentation, 224 bicubic resize.
    "vtab": TrainConfig(),
    # The released VTAB script uses d=16 instead of the paper's 8.
    "vtab_official_script": TrainConfig(dyt=DyTConfig(bottleneck=16)),
    # Full image sets (CIFAR-100, SVHN, Food-101, ...): d=64, s=0.1, base lr 1e-3 x bs/256,
    # wd 0.01, batch 1024, 20 warm-up epochs, cosine to 0.
    "full_image": TrainConfig(
        dyt=DyTConfig(bottleneck=64, adapter_scale=0.1),
        batch_size=1024,
        lr=1e-3,
        lr_is_base=True,
        min_lr=0.0,
        weight_decay=0.01,
        warmup_epochs=20,
        augment="rrc_flip",
    ),
    # Video (K400 / SSv2), 8 frames: d=64, s=0.1, batch 128, 2 warm-up epochs, 12 epochs (K400).
    "video_k400": TrainConfig(
        dyt=DyTConfig(bottleneck=64, adapter_scale=0.1),
        batch_size=128,
        lr=1e-3,
        lr_is_base=True,
        min_lr=0.0,
        weight_decay=0.01,
        warmup_epochs=2,
        epochs=12,
        num_frames=8,
        train_split="train",
        eval_split="val",
    ),
}
# SSv2 (the entry missing from the release): the K400 recipe, 50 epochs, SSv2 sampling protocol.
TRAIN_PRESETS["video_ssv2"] = replace(
    copy.deepcopy(TRAIN_PRESETS["video_k400"]), epochs=50, video_protocol="ssv2"
)


def get_train_preset(name: str, **overrides: Any) -> TrainConfig:
    """A copy of a named preset with fields overridden; unknown names raise ``ValueError``."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(TRAIN_PRESETS)}")
    return replace(copy.deepcopy(TRAIN_PRESETS[name]), **overrides)
