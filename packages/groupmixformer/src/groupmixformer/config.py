"""Model configurations: the five released GroupMixFormer variants and their published figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["GroupMixFormerConfig", "VARIANTS", "PUBLISHED", "EXPECTED", "get_config"]


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

    embed_dims: tuple[int, int, int, int] = (80, 160, 320, 320)
    depths: tuple[int, int, int, int] = (2, 4, 12, 4)
    mlp_ratios: tuple[float, float, float, float] = (4, 4, 4, 4)
    num_heads: int = 8
    qkv_bias: bool = True
    drop_path_rate: float = 0.2
    in_chans: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "mlp_ratios"):
            value = tuple(getattr(self, name))
            if len(value) != 4:
                raise ValueError(f"{name} must have 4 entries (one per stage), got {value}")
            object.__setattr__(self, name, value)
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
