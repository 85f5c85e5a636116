"""Typed configurations: the ETRIS model config and the training recipe of the paper."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["BACKBONE_BN_MODES", "INTERACTORS", "ETRISConfig", "TrainConfig"]

BACKBONE_BN_MODES = ("train", "eval")
INTERACTORS = ("full", "gated")


def _check_unknown(cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid: {sorted(known)}")


@dataclass
class ETRISConfig:
    """One ETRIS model: frozen open_clip towers, Bridger, HA neck, GA decoder, projector.

    Defaults are the paper's RN50 model at 416 px (the official code's configuration).
    """

    clip_model: str = "RN50-quickgelu"
    """open_clip model name (RN50-quickgelu, RN101-quickgelu, ViT-B-16-quickgelu), or a label
    for ``clip_config``."""
    clip_config: dict[str, Any] | None = None
    """A full open_clip model config dict (embed_dim, vision_cfg, text_cfg, quick_gelu) used
    instead of the named config (tiny models in tests and the demo)."""
    pretrained: str | None = None
    """CLIP weights: an open_clip tag (e.g. "openai"), a local checkpoint path, or None (random)."""
    image_size: int = 416
    """Input side; ViT towers are built for it (position grid resized bicubic, no antialias)."""
    word_len: int = 17
    """Text length L (17 RefCOCO/RefCOCO+, 22 G-Ref)."""
    use_bridger: bool = True
    """False gives the decoder-only baseline (same frozen towers, no cross-tower exchange)."""
    bridger_dim: int = 64
    """Bridger width d."""
    bridger_heads: int | None = None
    """Interactor heads; None: 4 for ResNets, 8 for ViTs (official code)."""
    interactor: Literal["full", "gated"] | None = None
    """Interactor type; None: "full" (post-norm decoder layer) for ResNets, "gated" for ViTs."""
    bridger_dropout: float = 0.1
    """Dropout inside the "full" interactor."""
    vis_dim: int = 512
    """Neck / decoder width; must equal the text tower width (word features enter unprojected)."""
    num_layers: int = 3
    """GA decoder layers."""
    num_heads: int = 8
    """GA decoder and neck attention heads."""
    dim_ffn: int = 512
    """GA decoder feed-forward width."""
    dropout: float = 0.1
    """GA decoder dropout."""
    backbone_bn: Literal["train", "eval"] = "train"
    """"train": frozen backbone BatchNorms use batch statistics in training and update their
    running stats (the official trainer); "eval": they always use running stats."""
    train_connect: bool = False
    """Train the dense attention pool's ``connect`` shortcut (frozen in the official code)."""
    train_positional: bool = True
    """Keep the towers' positional embeddings trainable (official behaviour)."""

    def __post_init__(self) -> None:
        for name in ("image_size", "word_len", "bridger_dim", "vis_dim", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("num_heads", "dim_ffn"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.word_len < 3:
            raise ValueError(f"word_len must be >= 3 (start, one word, end), got {self.word_len}")
        if self.bridger_heads is not None and (
            not isinstance(self.bridger_heads, int) or self.bridger_heads < 1
        ):
            raise ValueError(
                f"bridger_heads must be a positive int or None, got {self.bridger_heads!r}"
            )
        if self.interactor is not None and self.interactor not in INTERACTORS:
            raise ValueError(
                f"interactor must be one of {INTERACTORS} or None, got {self.interactor!r}"
            )
        if self.backbone_bn not in BACKBONE_BN_MODES:
            raise ValueError(
                f"backbone_bn must be one of {BACKBONE_BN_MODES}, got {self.backbone_bn!r}"
            )
        for name in ("bridger_dropout", "dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value}")
        if self.vis_dim % self.num_heads:
            raise ValueError(
                f"vis_dim must be divisible by num_heads, got {self.vis_dim} and {self.num_heads}"
            )
        if self.clip_config is not None and not all(
            k in self.clip_config for k in ("embed_dim", "vision_cfg", "text_cfg")
        ):
            raise ValueError(
                "clip_config must be an open_clip model config with embed_dim, vision_cfg and "
                f"text_cfg, got keys {sorted(self.clip_config)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ETRISConfig:
        _check_unknown(cls, data)
        return cls(**copy.deepcopy(data))


@dataclass
class TrainConfig:
    """One training run; defaults are the paper's recipe (all 12 official configs)."""

    model: ETRISConfig = field(default_factory=ETRISConfig)
    """The model to train."""
    data_root: str = ""
    """Folder with anns/<dataset>/<split>.json, masks/<dataset>/<id>.png and images/ (or lmdb/)."""
    dataset: str = "refcoco"
    """refcoco, refcoco+, refcocog_u, refcocog_g, or "shapes" (the built-in generator)."""
    train_split: str = "train"
    val_split: str = "val"
    data_format: Literal["json", "lmdb"] = "json"
    """Training data layout: JSON + mask PNGs + images, or the official LMDB files."""
    image_dir: str = "images"
    """Images folder, relative to data_root (COCO train2014)."""
    batch_size: int = 32
    """Total batch (the paper: 32, drop_last)."""
    lr: float = 1e-4
    """Adam learning rate (both parameter groups)."""
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (35,)
    """MultiStepLR milestones in epochs (gamma 0.1), stepped once per epoch."""
    gamma: float = 0.1
    num_workers: int = 4
    shapes_train: int = 2000
    """Number of generated samples when dataset == "shapes"."""
    shapes_val: int = 200
    max_val_samples: int | None = None
    """Cap on validation samples (None: all)."""

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ETRISConfig.from_dict(self.model)
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.data_format not in ("json", "lmdb"):
            raise ValueError(f"data_format must be 'json' or 'lmdb', got {self.data_format!r}")
        if self.dataset != "shapes" and not self.data_root:
            raise ValueError(
                f"data_root is required for dataset {self.dataset!r} (or use dataset='shapes')"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        _check_unknown(cls, data)
        data = copy.deepcopy(data)
        if isinstance(data.get("model"), dict):
            data["model"] = ETRISConfig.from_dict(data["model"])
        return cls(**data)
