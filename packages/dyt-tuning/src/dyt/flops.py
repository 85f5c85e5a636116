"""Analytic FLOPs of DyT ViTs, driven by the real eval masks.

Convention (the paper's, fvcore-style): one multiply-add = one FLOP; the attention matmuls
QK^T and AV are counted; LayerNorm counts 5 x numel; GELU, softmax, residual adds and the token
dispatcher are not counted. ViT-B/16 @224 with a 100-class head: 17.582 GFLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ViTDims", "FlopBreakdown", "dyt_flops", "eval_flops", "VIT_BASE", "VIT_LARGE"]

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
    def from_model(cls, model: nn.Module) -> ViTDims:
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


def dyt_flops(
    dims: ViTDims,
    bottleneck: int | None = None,
    active_tokens: Sequence[float] | torch.Tensor | None = None,
) -> FlopBreakdown:
    """Per-image FLOPs. ``bottleneck=None``: no adapter (plain ViT).

    active_tokens: (L,) active *patch* tokens per layer (prefix tokens always run the MLP);
    ``None`` means all tokens (the complete model). Fractions are allowed (batch means).
    """
    c, t, p, depth = dims.embed_dim, dims.num_tokens, dims.num_prefix_tokens, dims.depth
    if active_tokens is None:
        active = [float(dims.num_patches)] * depth
    else:
        active = [float(k) for k in torch.as_tensor(active_tokens, dtype=torch.float64).flatten()]
    if len(active) != depth:
        raise ValueError(f"active_tokens needs one count per layer ({depth}), got {len(active)}")
    if any(k < 0 or k > dims.num_patches for k in active):
        raise ValueError(f"active_tokens must lie in [0, {dims.num_patches}], got {active}")
    norm1 = LAYERNORM_COST * t * c
    attention_per_layer = norm1 + t * c * 3 * c + 2 * t * t * c + t * c * c
    mlp_per_token = LAYERNORM_COST * c + 2 * c * dims.mlp_hidden
    mlp_tokens = sum(p + k for k in active)
    adapter_per_layer = 2 * t * c * bottleneck if bottleneck else 0
    final_norm = LAYERNORM_COST * t * c
    return FlopBreakdown(
        patch_embed=float(dims.num_patches * c * dims.in_chans * dims.patch_size**2),
        attention=float(depth * attention_per_layer),
        mlp=float(mlp_tokens * mlp_per_token),
        adapter=float(depth * adapter_per_layer),
        head=float(final_norm + c * dims.num_classes),
        layernorm=float(depth * norm1 + mlp_tokens * LAYERNORM_COST * c + final_norm),
        dispatcher=float(depth * dims.num_patches * c) if bottleneck else 0.0,
    )


@torch.no_grad()
def eval_flops(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FLOPs of each image under the model's real eval masks (MLP dispatch only).

    images: (B, 3, H, W) -> (flops per image (B,), active patch tokens per layer (B, L)).
    The model is run in eval mode and restored to its previous mode afterwards.
    """
    config = getattr(model, "dyt_config", None)
    if config is None:
        raise TypeError("eval_flops needs a DyT model (see dyt.convert_vit)")
    if config.dispatch != "mlp":
        raise ValueError(
            f"analytic FLOPs cover MLP dispatch only, got dispatch={config.dispatch!r}"
        )
    was_training = model.training
    model.eval()
    try:
        _, aux = model(images)
    finally:
        model.train(was_training)
    active = aux["token_select"].squeeze(-1).sum(-1)  # (B, L)
    dims = ViTDims.from_model(model)
    flops = torch.tensor([dyt_flops(dims, config.bottleneck, row).total for row in active])
    return flops, active
