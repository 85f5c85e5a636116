"""Typed configurations of KeViLI and LeViLM.

The method code was never released; TransVG's published settings (Deng et al., ICCV 2021) are used
where the SK-VG paper builds on TransVG (d = 256, 8 heads, FFN 2048, dropout 0.1, six visual and six
vision-language layers, AdamW with lr 1e-4 for new modules and 1e-5 for pre-trained ones, weight decay
1e-4, 90 epochs with the lr divided by 10 at epoch 60, 640 px). The knowledge-embedding block (joint
fusion, six layers, one shared text encoder, 128 knowledge tokens) and LeViLM's matching head are this
package's reconstruction of the paper's figures: every such choice is a field here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["KeViLIConfig", "LeViLMConfig", "TrainConfig", "FUSIONS"]

FUSIONS = ("joint", "cross")


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(names)}")
    return cls(**data)


@dataclass
class KeViLIConfig:
    """Knowledge-embedded vision-language interaction (one-stage)."""

    backbone: str = "resnet50"
    """resnet50 | resnet101 | resnet18 | tiny (a small stride-32 net for tests and the demo)."""
    text_model: str = "bert-base-uncased"
    """transformers model name or local path of the text encoder."""
    image_size: int = 640
    """Square letterbox canvas; must be a multiple of 32."""
    hidden_dim: int = 256
    """d of every transformer."""
    nhead: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    visual_layers: int = 6
    """DETR encoder layers on the visual tokens."""
    vl_layers: int = 6
    """Vision-language (TransVG) layers over [REG; query; visual]."""
    ke_layers: int = 6
    """Knowledge-embedding layers; 0 ignores the knowledge (plain TransVG on the query)."""
    knowledge_fusion: str = "joint"
    """joint: self-attention over [visual; knowledge], visual outputs kept; cross: visual tokens
    cross-attend to the knowledge."""
    share_text_encoder: bool = True
    """One text encoder for query and knowledge."""
    max_query_len: int = 40
    """L_q tokens of the query."""
    max_knowledge_len: int = 128
    """L_k tokens of the knowledge passage (truncated beyond; up to 256)."""
    tiny_width: int = 32
    """Channels of the ``tiny`` backbone."""

    def __post_init__(self) -> None:
        if self.knowledge_fusion not in FUSIONS:
            raise ValueError(
                f"knowledge_fusion must be one of {FUSIONS}, got {self.knowledge_fusion!r}"
            )
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")
        if self.hidden_dim % self.nhead:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by nhead ({self.nhead})"
            )
        for name in ("visual_layers", "vl_layers", "ke_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.max_query_len <= 512 or not 1 <= self.max_knowledge_len <= 512:
            raise ValueError("max_query_len and max_knowledge_len must be in 1..512")

    @property
    def num_visual_tokens(self) -> int:
        return (self.image_size // 32) ** 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeViLIConfig:
        return _from_dict(cls, data)


@dataclass
class LeViLMConfig:
    """Linguistic-enhanced vision-language matching (two-stage)."""

    backbone: str = "resnet50"
    text_model: str = "bert-base-uncased"
    image_size: int = 640
    embed_dim: int = 256
    """d of the region and entity embeddings."""
    region_hidden: int = 768
    """Hidden width of the region MLP (C5 -> 768 -> d)."""
    use_geometry: bool = True
    """Concatenate (x1, y1, x2, y2, area) / image size to the pooled region feature."""
    init_temperature: float = 0.07
    """tau of s_n = <r_n, e> / tau, learned in log space, 1 / tau clamped at 100."""
    max_text_len: int = 168
    """Tokens of "<query>. <knowledge>"."""
    tiny_width: int = 32

    def __post_init__(self) -> None:
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")
        if not 0 < self.init_temperature <= 1:
            raise ValueError(f"init_temperature must be in (0, 1], got {self.init_temperature}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeViLMConfig:
        return _from_dict(cls, data)


@dataclass
class TrainConfig:
    """Optimisation (TransVG's settings)."""

    lr: float = 1e-4
    """New modules."""
    lr_pretrained: float = 1e-5
    """Backbone, visual encoder and text encoder."""
    weight_decay: float = 1e-4
    batch_size: int = 64
    lr_drop_epoch: int = 60
    """Epoch at which the lr is divided by 10 (StepLR)."""
    use_knowledge: bool = True
    """False blanks every knowledge passage (the query-only baseline)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)
