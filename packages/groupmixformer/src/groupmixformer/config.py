"""Model configurations: the five released GroupMixFormer variants and their published figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = ["GroupMixFormerConfig", "TrainConfig", "VARIANTS", "PUBLISHED", "EXPECTED", "get_config"]


@dataclass(frozen=True)
class GroupMixFormerConfig:
    """Architecture of a GroupMixFormer (defaults: the released S model).

    embed_dims: channels C0..C3 of the four stages; each must be divisible by 10 (5 segments of
        even width, so that the 4 attention segments split into 8 heads).
    depths: number of GMA blocks per stage.
    mlp_ratios: hidden width of each stage's MLP as a multiple of its width.
    num_heads: attention heads (8 in every released model; the CRPE 2/3/3 head split needs 8).
    drop_path_rate: stochastic-depth rate of the last block (linear from 0 over all blocks).
    """

    embed_dims: tuple[int, ...] = (80, 160, 320, 320)
    depths: tuple[int, ...] = (2, 4, 12, 4)
    mlp_ratios: tuple[float, ...] = (4.0, 4.0, 4.0, 4.0)
    num_heads: int = 8
    qkv_bias: bool = True  # bias of the q/k/v projection (True in every released model)
    drop_path_rate: float = 0.2
    in_chans: int = 3  # input image channels
    num_classes: int = 1000  # classifier outputs; 0 = no classifier (pooled features)

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "mlp_ratios"):
            value = tuple(getattr(self, name))
            if len(value) != 4:
                raise ValueError(f"{name} must have 4 entries (one per stage), got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "mlp_ratios", tuple(float(r) for r in self.mlp_ratios))
        for dim in self.embed_dims:
            if dim <= 0 or dim % 10:
                raise ValueError(
                    f"every embed_dim must be a positive multiple of 10 (5 segments of even width), "
                    f"got {self.embed_dims}"
                )
        if self.num_heads != 8:
            raise ValueError(
                f"num_heads must be 8 (the CRPE 2/3/3 head split), got {self.num_heads}"
            )
        if any(d < 1 for d in self.depths):
            raise ValueError(f"depths must be >= 1, got {self.depths}")
        if any(r <= 0 for r in self.mlp_ratios):
            raise ValueError(f"mlp_ratios must be > 0, got {self.mlp_ratios}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.in_chans < 1 or self.num_classes < 0:
            raise ValueError(
                f"in_chans must be >= 1 and num_classes >= 0, got {self.in_chans}, {self.num_classes}"
            )

    def replace(self, **overrides: Any) -> GroupMixFormerConfig:
        return replace(self, **overrides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GroupMixFormerConfig:
        """Build from a dict (e.g. a saved ``config.json``); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown GroupMixFormerConfig fields {unknown}; valid: {sorted(known)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VARIANTS: dict[str, GroupMixFormerConfig] = {
    "miny": GroupMixFormerConfig(
        (40, 80, 160, 160), (3, 3, 12, 4), (4, 4, 4, 4), drop_path_rate=0.1
    ),
    "tiny": GroupMixFormerConfig(
        (80, 160, 200, 240), (4, 4, 12, 4), (4, 4, 4, 4), drop_path_rate=0.1
    ),
    "small": GroupMixFormerConfig(
        (80, 160, 320, 320), (2, 4, 12, 4), (4, 4, 4, 4), drop_path_rate=0.2
    ),
    "base": GroupMixFormerConfig(
        (200, 240, 320, 480), (8, 8, 12, 8), (2, 2, 4, 4), drop_path_rate=0.5
    ),
    # The official config is marked "need to adjust": it gives 71.83M / 38.2G, not the published
    # 70.3M / 36.1G, and its drop path 0.1 is uncertain. Kept as released.
    "large": GroupMixFormerConfig(
        (240, 320, 360, 480), (8, 10, 30, 10), (4, 4, 2, 2), drop_path_rate=0.1
    ),
}

# Published figures (official README, 224x224, ImageNet-1k): params (M), FLOPs (G), top-1 (%).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "miny": (5.7, 1.4, 79.6),
    "tiny": (11.0, 3.7, 82.6),
    "small": (22.4, 5.2, 83.4),
    "base": (45.8, 17.6, 84.7),
    "large": (70.3, 36.1, 85.0),
}

# What the released definitions give: exact trainable params, FLOPs at 224 (G, one MAC = one FLOP,
# fvcore), number of state-dict keys.
EXPECTED: dict[str, tuple[int, float, int]] = {
    "miny": (5_733_120, 1.350, 1149),
    "tiny": (10_949_152, 3.720, 1249),
    "small": (22_421_320, 5.164, 1149),
    "base": (45_827_272, 17.552, 1849),
    "large": (71_833_648, 38.246, 2949),
}


def get_config(name: str, **overrides: Any) -> GroupMixFormerConfig:
    """The config of a released variant (``miny``/``tiny``/``small``/``base``/``large``, or the
    ``groupmixformer_`` names, or the letters m/t/s/b/l), with fields overridden."""
    key = name.removeprefix("groupmixformer_")
    key = {"m": "miny", "t": "tiny", "s": "small", "b": "base", "l": "large"}.get(key, key)
    if key not in VARIANTS:
        raise ValueError(f"unknown GroupMixFormer variant {name!r}; valid: {sorted(VARIANTS)}")
    return VARIANTS[key].replace(**overrides) if overrides else VARIANTS[key]


# The release's ImageNet-1k schedule: 300 epochs with 20 of linear warmup.
RELEASE_EPOCHS = 300
RELEASE_WARMUP_EPOCHS = 20


@dataclass(frozen=True)
class TrainConfig:
    """What ``groupmixformer train`` needs besides the shared trainer settings (epochs, precision,
    clipping, seed, run folder: ``papers_shared.trainer.TrainerConfig``). Defaults: the release's
    ImageNet-1k recipe, per process of its 8 (batch 64 each, 512 in total).

    data_dir: holds ``train/<class>/<images>`` and ``val/<class>/<images>``.
    model: released variant (miny | tiny | small | base | large).
    model_overrides: GroupMixFormerConfig fields to change (e.g. ``{"embed_dims": [40, ...]}``).
    drop_path_rate: None keeps the variant's rate.
    batch_size: images per process and step; even (Mixup mixes pairs).
    base_lr, warmup_lr, min_lr: per 512 images, scaled linearly by the global batch.
    warmup_epochs: linear warmup from ``warmup_lr``; None scales the release's 20 of 300 epochs to
        the run's length (``round(epochs * 20 / 300)``); it must be smaller than ``epochs``.
    weight_decay: AdamW decay, not applied to 1-D parameters and biases.
    img_size, auto_augment, re_prob: RandomResizedCrop size, RandAugment policy, RandomErasing p.
    mixup, cutmix, smoothing: Mixup / CutMix alphas (0 and 0: plain label-smoothed CE) and the
        label smoothing folded into the targets.
    workers: DataLoader worker processes.
    """

    data_dir: str
    model: str = "small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    drop_path_rate: float | None = None
    batch_size: int = 64
    base_lr: float = 5e-4
    warmup_lr: float = 5e-7
    min_lr: float = 5e-6
    warmup_epochs: int | None = None
    weight_decay: float = 0.05
    img_size: int = 224
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    re_prob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    workers: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", str(self.data_dir))
        object.__setattr__(self, "model_overrides", dict(self.model_overrides))
        get_config(self.model, **self.model_overrides)  # unknown variant or field: ValueError
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(
                f"batch_size must be even and >= 2 (Mixup mixes pairs), got {self.batch_size}"
            )
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        for name in ("base_lr", "warmup_lr", "min_lr", "weight_decay", "mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.smoothing < 1 or not 0 <= self.re_prob <= 1:
            raise ValueError(
                f"smoothing must be in [0, 1) and re_prob in [0, 1], got {self.smoothing}, "
                f"{self.re_prob}"
            )
        if self.img_size < 32 or self.workers < 0:
            raise ValueError(
                f"img_size must be >= 32 and workers >= 0, got {self.img_size}, {self.workers}"
            )

    def resolved_warmup_epochs(self, epochs: int) -> int:
        """The warmup length for a run of ``epochs`` (see ``warmup_epochs``)."""
        if self.warmup_epochs is None:
            return round(epochs * RELEASE_WARMUP_EPOCHS / RELEASE_EPOCHS)
        if self.warmup_epochs >= epochs:
            raise ValueError(
                f"--warmup-epochs ({self.warmup_epochs}) must be smaller than --epochs ({epochs}); "
                f"leave --warmup-epochs unset to scale the release's 20 of 300 epochs"
            )
        return self.warmup_epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict (a ``--config`` file, a run's config.json); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid: {sorted(known)}")
        if values.get("data_dir") is None:
            raise ValueError("data_dir is required (--data-dir, or data_dir in the --config file)")
        return cls(**values)
