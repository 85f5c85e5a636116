"""Analytic FLOPs of DyT ViTs, driven by the real eval masks.

Convention (the paper's, fvcore-style): one multiply-add = one FLOP; the attention matmuls
QK^T and AV are counted; LayerNorm counts 5 x numel; GELU, softmax, residual adds and the token
dispatcher are not counted. ViT-B/16 @224 with a 100-class head: 17.582 GFLOPs.

Counts follow the packed (real-skipping) eval path of every dispatch mode: skipped tokens cost
nothing in the part they skip (for attention: they are neither queries nor keys/values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from dyt.config import DISPATCH_MODES

__all__ = [
    "ViTDims",
    "FlopBreakdown",
    "dyt_flops",
    "eval_flops",
    "flops_from_masks",
    "VIT_BASE",
    "VIT_LARGE",
]

LAYERNORM_COST = 5  # FLOPs per element, as in fvcore


@dataclass(frozen=True)
class ViTDims:
    """The sizes that fix a plain ViT's cost."""

    num_patches: int = 196
    num_prefix_tokens: int = 1
    embed_dim: int = 768
    depth: int = 12
    mlp_hidden: int = 3072
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 100

    @property
    def num_tokens(self) -> int:
        return self.num_patches + self.num_prefix_tokens

    @classmethod
    def from_model(cls, model: Any) -> ViTDims:
        """Read the sizes of a timm ``VisionTransformer`` (DyT-converted or not)."""
        patch_embed = model.patch_embed
        proj = patch_embed.proj
        head = model.head
        block = model.blocks[0]
        return cls(
            num_patches=int(patch_embed.num_patches),
            num_prefix_tokens=int(model.num_prefix_tokens),
            embed_dim=int(model.embed_dim),
            depth=len(model.blocks),
            mlp_hidden=int(block.mlp.fc1.out_features),
            patch_size=int(proj.kernel_size[0]),
            in_chans=int(proj.in_channels),
            num_classes=int(head.out_features) if isinstance(head, nn.Linear) else 0,
        )


VIT_BASE = ViTDims()
VIT_LARGE = ViTDims(embed_dim=1024, depth=24, mlp_hidden=4096)


@dataclass(frozen=True)
class FlopBreakdown:
    """FLOPs of one image by part; ``total`` follows the paper's convention."""

    patch_embed: float
    attention: float
    mlp: float
    adapter: float
    head: float
    layernorm: float
    """The LayerNorm share already inside attention / mlp / head (for cross-checks)."""
    dispatcher: float
    """Token-dispatcher FLOPs, not part of ``total`` (the paper ignores them)."""

    @property
    def total(self) -> float:
        return self.patch_embed + self.attention + self.mlp + self.adapter + self.head

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def _attention_cost(dims: ViTDims, tokens: float) -> float:
    """norm1 + qkv + QK^T + AV + proj for ``tokens`` tokens attending among themselves."""
    c = dims.embed_dim
    return LAYERNORM_COST * tokens * c + 4 * tokens * c * c + 2 * tokens * tokens * c


def _layer_counts(dims: ViTDims, dispatch: str, active: list[float]) -> list[tuple[float, float]]:
    """(tokens through attention, tokens through the MLP) per layer, prefix tokens included."""
    t, p, depth = dims.num_tokens, dims.num_prefix_tokens, dims.depth
    if dispatch == "mlp":
        return [(t, p + k) for k in active]
    if dispatch == "attn":
        return [(p + k, t) for k in active]
    if dispatch == "layer":
        return [(p + k, p + k) for k in active]
    return [(p + active[2 * i], p + active[2 * i + 1]) for i in range(depth)]  # attn_mlp


def dyt_flops(
    dims: ViTDims,
    bottleneck: int | None = None,
    active_tokens: Sequence[float] | torch.Tensor | None = None,
    dispatch: str = "mlp",
) -> FlopBreakdown:
    """Per-image FLOPs of the packed (real-skipping) eval path. ``bottleneck=None``: no adapter.

    active_tokens: active *patch* tokens per dispatcher, in the order of ``aux["token_select"]``:
    (L,) for ``dispatch`` "mlp", "attn", "layer"; (2L,) for "attn_mlp" (attention, MLP of block
    0, then block 1, ...). Prefix tokens are always active. ``None`` = all tokens (complete
    model). Where tokens go per dispatch mode, with a = prefix + active patch tokens:

    - "mlp": attention on all T tokens, MLP on a tokens.
    - "attn": the a tokens attend only among themselves (a x a scores): norm1, qkv, QK^T, AV and
      proj are counted for a tokens, never for the T - a skipped ones; the MLP runs on all T.
    - "layer": attention as in "attn", then the MLP on the same a tokens.
    - "attn_mlp": attention on a_1 tokens, MLP on a_2 tokens, two adapters per block.

    The dense key-masked path (training, ``sparse=False``) still computes attention for all T
    tokens; its cost is the complete model's. The attention term is quadratic in a, so pass
    per-image counts (batch means give a lower bound).
    """
    if dispatch not in DISPATCH_MODES:
        raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, got {dispatch!r}")
    c, t, depth = dims.embed_dim, dims.num_tokens, dims.depth
    dispatchers = 2 * depth if dispatch == "attn_mlp" else depth
    if active_tokens is None:
        active = [float(dims.num_patches)] * dispatchers
    else:
        active = [float(k) for k in torch.as_tensor(active_tokens, dtype=torch.float64).flatten()]
    if len(active) != dispatchers:
        raise ValueError(
            f"active_tokens needs one count per dispatcher ({dispatchers}), got {len(active)}"
        )
    if any(k < 0 or k > dims.num_patches for k in active):
        raise ValueError(f"active_tokens must lie in [0, {dims.num_patches}], got {active}")
    counts = _layer_counts(dims, dispatch, active)
    attention_tokens = sum(a for a, _ in counts)
    mlp_tokens = sum(m for _, m in counts)
    mlp_per_token = LAYERNORM_COST * c + 2 * c * dims.mlp_hidden
    adapter_per_dispatcher = 2 * t * c * bottleneck if bottleneck else 0
    final_norm = LAYERNORM_COST * t * c
    return FlopBreakdown(
        patch_embed=float(dims.num_patches * c * dims.in_chans * dims.patch_size**2),
        attention=float(sum(_attention_cost(dims, a) for a, _ in counts)),
        mlp=float(mlp_tokens * mlp_per_token),
        adapter=float(dispatchers * adapter_per_dispatcher),
        head=float(final_norm + c * dims.num_classes),
        layernorm=float(LAYERNORM_COST * c * (attention_tokens + mlp_tokens + t)),
        dispatcher=float(dispatchers * dims.num_patches * c) if bottleneck else 0.0,
    )


def flops_from_masks(model: nn.Module, token_select: torch.Tensor) -> torch.Tensor:
    """Per-image FLOPs of a DyT model from its eval masks ``aux["token_select"]`` (B, L', N, 1)."""
    from dyt.models.dispatch import get_dyt_config

    config = get_dyt_config(model)
    vit = getattr(model, "backbone", model)  # a video model counts its per-frame ViT
    dims = ViTDims.from_model(vit)
    head = getattr(model, "head", None)
    if vit is not model and isinstance(head, nn.Linear):
        dims = replace(dims, num_classes=head.out_features)
    active = token_select.detach().squeeze(-1).sum(-1).cpu()  # (B, L')
    return torch.tensor(
        [dyt_flops(dims, config.bottleneck, row, config.dispatch).total for row in active],
        dtype=torch.float64,
    )


@torch.no_grad()
def eval_flops(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FLOPs of each image under the model's real eval masks (every dispatch mode).

    images: (B, 3, H, W) -> (flops per image (B,), active patch tokens per dispatcher (B, L')).
    The model is run in eval mode and restored to its previous mode afterwards.
    """
    from dyt.models.dispatch import forward_dyt, get_dyt_config

    get_dyt_config(model)  # raises for a model that is not DyT
    was_training = model.training
    model.eval()
    try:
        _, aux = forward_dyt(model, images)
    finally:
        model.train(was_training)
    return flops_from_masks(model, aux["token_select"]), aux["token_select"].squeeze(-1).sum(-1)
