"""DyT on timm Swin Transformers (paper section 4: Swin-B, DyT on every MLP).

Every ``SwinTransformerBlock`` gets the parallel adapter and a token dispatcher on its MLP, as
in the ViT (MLP dispatch): TD and adapter read the residual stream after window attention; the
mask multiplies the MLP branch. Swin has no class token, so every token can be skipped. Each
block is replaced by a :class:`DyTSwinBlock` holding the timm block as ``base_layer``; the model
stays a timm ``SwinTransformer``. Paper-based: the authors released no Swin code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from timm.models.swin_transformer import PatchMerging, SwinTransformer, SwinTransformerBlock
from torch import nn

from dyt.config import DyTConfig
from dyt.flops import LAYERNORM_COST
from dyt.models.dispatch import DispatchBlock, get_dyt_config, is_dyt_model
from dyt.models.dyt_vit import add_on_active_rows, make_adapter
from dyt.models.layers import TokenDispatcher

__all__ = ["DyTSwinBlock", "convert_swin", "swin_flops", "SwinFlops"]


class DyTSwinBlock(DispatchBlock):
    """MLP dispatch around a frozen timm ``SwinTransformerBlock`` held as ``base_layer``::

        x = x + drop_path1(window_attn(norm1(x)))       # all tokens
        out = x + m * drop_path2(mlp(norm2(x))) + adapter(x)

    Swin has no class token, so every token can be skipped. Keys: the timm block's under
    ``base_layer.``, plus ``adaptmlp.*`` and ``mlp_token_select.*`` as in the ViT.
    """

    def __init__(self, block: SwinTransformerBlock, config: DyTConfig) -> None:
        super().__init__(config.sparse_inference)
        self.base_layer = block
        self.adaptmlp = make_adapter(config, block.dim)
        self.mlp_token_select = TokenDispatcher(block.dim, tau=config.tau)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        return base.drop_path2(base.mlp(base.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C), timm's block contract."""
        base = self.base_layer
        batch, height, width, channels = x.shape
        x = x + base.drop_path1(base._attn(base.norm1(x)))
        x = x.reshape(batch, -1, channels)
        mask, logits = self.mlp_token_select(x)
        adapter_out = self.adaptmlp(x)
        if self.complete:
            x = x + self._mlp(x) + adapter_out
        elif self.sparse_inference and not self.training and not x.is_meta:
            x = add_on_active_rows(x, mask, self._mlp) + adapter_out
        else:
            x = x + mask * self._mlp(x) + adapter_out
        self._record(mask, logits)
        return x.reshape(batch, height, width, channels)


def convert_swin(
    model: nn.Module,
    config: DyTConfig | None = None,
    *,
    num_classes: int | None = None,
    head_init_std: float = 0.01,
    **overrides: Any,
) -> SwinTransformer:
    """Turn a timm ``SwinTransformer`` into a DyT model (MLP dispatch), in place, and return it.

    Every block is replaced by a :class:`DyTSwinBlock` holding it; the model stays a timm
    ``SwinTransformer`` (``forward`` returns logits; :func:`dyt.forward_dyt` adds the masks).
    The backbone is frozen; adapters, dispatchers and the classifier are trainable.
    """
    if not isinstance(model, SwinTransformer):
        raise TypeError(f"convert_swin expects a timm SwinTransformer, got {type(model).__name__}")
    if is_dyt_model(model):
        raise ValueError("model is already a DyT model")
    config = replace(config, **overrides) if config is not None else DyTConfig(**overrides)
    if config.dispatch != "mlp":
        raise ValueError(f"Swin supports MLP dispatch only, got dispatch={config.dispatch!r}")
    for param in model.parameters():
        param.requires_grad_(False)
    reference = next(model.parameters())
    stages: Any = model.layers
    for stage in stages:
        stage.blocks = nn.Sequential(*[DyTSwinBlock(block, config) for block in stage.blocks]).to(
            device=reference.device, dtype=reference.dtype
        )
    if num_classes is not None:
        model.reset_classifier(num_classes)
        fc = model.head.fc
        if isinstance(fc, nn.Linear):
            nn.init.trunc_normal_(fc.weight, std=head_init_std)
            nn.init.zeros_(fc.bias)
    for param in model.head.parameters():
        param.requires_grad_(True)
    vars(model)["dyt_config"] = config  # a plain attribute beside the modules
    return model


@dataclass(frozen=True)
class SwinFlops:
    """Per-image FLOPs of a DyT Swin (paper convention, as :class:`dyt.flops.FlopBreakdown`)."""

    total: float
    layernorm: float
    """The LayerNorm share inside ``total`` (torch's counter does not count norms)."""
    dispatcher: float
    """Token-dispatcher FLOPs, not part of ``total``."""

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def swin_flops(
    model: Any, active_per_block: Sequence[float] | torch.Tensor | None = None
) -> SwinFlops:
    """FLOPs of one image through a timm / DyT Swin at its native resolution.

    active_per_block: tokens through each block's MLP (``aux["active_per_block"]`` row); None =
    all. Window attention is counted on the padded token grid: qkv + proj on every token,
    QK^T and AV inside each window (window_area x window_area per window).
    """
    blocks = [
        getattr(block, "base_layer", block) for stage in model.layers for block in stage.blocks
    ]
    if active_per_block is None:
        active = [None] * len(blocks)
    else:
        active = [float(a) for a in torch.as_tensor(active_per_block).flatten()]
        if len(active) != len(blocks):
            raise ValueError(f"need one count per block ({len(blocks)}), got {len(active)}")
    bottleneck = get_dyt_config(model).bottleneck if is_dyt_model(model) else 0
    proj = model.patch_embed.proj
    grid = model.patch_embed.grid_size
    tokens = grid[0] * grid[1]
    total = tokens * proj.out_channels * proj.in_channels * math.prod(proj.kernel_size)
    has_norm = isinstance(model.patch_embed.norm, nn.LayerNorm)
    norms = LAYERNORM_COST * tokens * proj.out_channels if has_norm else 0.0
    dispatcher = 0.0
    index = 0
    for stage in model.layers:
        if isinstance(stage.downsample, PatchMerging):
            merged = stage.downsample.reduction
            tokens = tokens // 4
            norms += LAYERNORM_COST * tokens * merged.in_features
            total += tokens * merged.in_features * merged.out_features
        for dyt_block in stage.blocks:
            block = getattr(dyt_block, "base_layer", dyt_block)
            c, (height, width) = block.dim, block.input_resolution
            window_h, window_w = block.window_size
            padded = (
                math.ceil(height / window_h) * window_h * math.ceil(width / window_w) * window_w
            )
            hidden = block.mlp.fc1.out_features
            count = active[index]
            mlp_tokens = tokens if count is None else count
            total += 4 * padded * c * c + 2 * padded * block.window_area * c
            total += mlp_tokens * 2 * c * hidden + 2 * tokens * c * bottleneck
            norms += LAYERNORM_COST * c * (tokens + mlp_tokens)
            dispatcher += tokens * c if bottleneck else 0.0
            index += 1
    channels = model.num_features
    norms += LAYERNORM_COST * tokens * channels
    fc = model.head.fc
    total += channels * fc.out_features if isinstance(fc, nn.Linear) else 0
    return SwinFlops(total=float(total + norms), layernorm=float(norms), dispatcher=dispatcher)
