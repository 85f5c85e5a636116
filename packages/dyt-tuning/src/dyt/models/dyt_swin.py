"""DyT on timm Swin Transformers (paper section 4: Swin-B, DyT on every MLP).

Every ``SwinTransformerBlock`` gets the parallel adapter and a token dispatcher on its MLP, as
in the ViT (MLP dispatch): TD and adapter read the residual stream after window attention; the
mask multiplies the MLP branch. Swin has no class token, so every token can be skipped. Block
classes are swapped in place, so timm's keys stay and ``adaptmlp.*`` / ``mlp_token_select.*``
are added per block as in the ViT. Paper-based: the authors released no Swin code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from timm.models.swin_transformer import PatchMerging, SwinTransformer, SwinTransformerBlock
from torch import nn

from dyt.config import DyTConfig
from dyt.flops import LAYERNORM_COST
from dyt.models.dyt_vit import _make_adapter, add_on_active_rows
from dyt.models.layers import TokenDispatcher

__all__ = ["DyTSwinBlock", "DyTSwinTransformer", "convert_swin", "swin_flops", "SwinFlops"]


class DyTSwinBlock(SwinTransformerBlock):
    """A timm Swin block with MLP dispatch; built by :func:`convert_swin` (class swap)::

    x = x + drop_path1(window_attn(norm1(x)))       # all tokens
    out = x + m * drop_path2(mlp(norm2(x))) + adapter(x)
    """

    adaptmlp: nn.Module
    mlp_token_select: TokenDispatcher

    def dyt_forward(
        self, x: torch.Tensor, complete: bool = False, sparse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, H, W, C) -> (x (B, H, W, C), mask (B, H*W, 1), logits (B, H*W, 1))."""
        batch, height, width, channels = x.shape
        x = x + self.drop_path1(self._attn(self.norm1(x)))
        x = x.reshape(batch, -1, channels)
        mask, logits = self.mlp_token_select(x)
        adapter_out = self.adaptmlp(x)
        if complete:
            x = x + self._mlp(x) + adapter_out
        elif sparse and not self.training:
            x = add_on_active_rows(x, mask, self._mlp) + adapter_out
        else:
            x = x + mask * self._mlp(x) + adapter_out
        return x.reshape(batch, height, width, channels), mask, logits

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path2(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """timm's contract (B, H, W, C) -> (B, H, W, C), dispatched (dense masks)."""
        return self.dyt_forward(x)[0]


class DyTSwinTransformer(SwinTransformer):
    """A timm ``SwinTransformer`` whose MLPs dispatch tokens. Built by :func:`convert_swin`.

    ``forward(x, complete=False, sparse=None) -> (logits, aux)``: blocks have different token
    counts, so ``aux["token_select"]`` / ``aux["token_logits"]`` concatenate every block's
    tokens: (B, 1, sum of H*W, 1) (``rate_loss`` then averages over all token decisions, like the
    ViT's), and ``aux["active_per_block"]`` is (B, blocks) active tokens for :func:`swin_flops`.
    """

    dyt_config: DyTConfig

    def forward_dyt_features(
        self, x: torch.Tensor, complete: bool = False, sparse: bool | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, 3, H, W) -> (normed features (B, h, w, C), aux)."""
        use_sparse = not self.training and (
            self.dyt_config.sparse_inference if sparse is None else sparse
        )
        x = self.patch_embed(x)
        masks, logits = [], []
        for stage in self.layers:
            x = stage.downsample(x)
            for block in stage.blocks:
                x, mask, logit = block.dyt_forward(x, complete=complete, sparse=use_sparse)
                masks.append(mask)
                logits.append(logit)
        aux = {
            "token_select": torch.cat(masks, dim=1).unsqueeze(1),
            "token_logits": torch.cat(logits, dim=1).unsqueeze(1),
            "active_per_block": torch.stack([m.detach().sum(dim=(1, 2)) for m in masks], dim=1),
        }
        return self.norm(x), aux

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, complete: bool = False, sparse: bool | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, 3, H, W) -> (logits (B, K), aux). ``complete=True`` ignores every mask."""
        if x.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        features, aux = self.forward_dyt_features(x, complete=complete, sparse=sparse)
        return self.forward_head(features), aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_dyt_features(x)[0]

    def set_sparse_inference(self, enabled: bool) -> None:
        self.dyt_config = replace(self.dyt_config, sparse_inference=enabled)


@functools.cache
def _swin_class(base: type[SwinTransformer]) -> type[SwinTransformer]:
    if base is SwinTransformer:
        return DyTSwinTransformer
    return type(f"DyT{base.__name__}", (DyTSwinTransformer, base), {})


def convert_swin(
    model: nn.Module,
    config: DyTConfig | None = None,
    *,
    num_classes: int | None = None,
    head_init_std: float = 0.01,
    **overrides: Any,
) -> DyTSwinTransformer:
    """Turn a timm ``SwinTransformer`` into a DyT model (MLP dispatch), in place, and return it.

    The backbone is frozen; adapters, dispatchers and the classifier are trainable.
    """
    if not isinstance(model, SwinTransformer):
        raise TypeError(f"convert_swin expects a timm SwinTransformer, got {type(model).__name__}")
    if isinstance(model, DyTSwinTransformer):
        raise ValueError("model is already a DyT model")
    config = replace(config, **overrides) if config is not None else DyTConfig(**overrides)
    if config.dispatch != "mlp":
        raise ValueError(f"Swin supports MLP dispatch only, got dispatch={config.dispatch!r}")
    for param in model.parameters():
        param.requires_grad_(False)
    device = next(model.parameters()).device
    for stage in model.layers:
        for block in stage.blocks:
            block.adaptmlp = _make_adapter(config, block.dim).to(device)
            block.mlp_token_select = TokenDispatcher(block.dim, tau=config.tau).to(device)
            block.__class__ = DyTSwinBlock
    if num_classes is not None:
        model.reset_classifier(num_classes)
        fc = model.head.fc
        if isinstance(fc, nn.Linear):
            nn.init.trunc_normal_(fc.weight, std=head_init_std)
            nn.init.zeros_(fc.bias)
        model.head.to(device)
    for param in model.head.parameters():
        param.requires_grad_(True)
    model.__class__ = _swin_class(type(model))
    model.dyt_config = config
    return model  # type: ignore[return-value]


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
    model: nn.Module, active_per_block: Sequence[float] | torch.Tensor | None = None
) -> SwinFlops:
    """FLOPs of one image through a timm / DyT Swin at its native resolution.

    active_per_block: tokens through each block's MLP (``aux["active_per_block"]`` row); None =
    all. Window attention is counted on the padded token grid: qkv + proj on every token,
    QK^T and AV inside each window (window_area x window_area per window).
    """
    blocks = [block for stage in model.layers for block in stage.blocks]
    if active_per_block is None:
        active = [None] * len(blocks)
    else:
        active = [float(a) for a in torch.as_tensor(active_per_block).flatten()]
        if len(active) != len(blocks):
            raise ValueError(f"need one count per block ({len(blocks)}), got {len(active)}")
    bottleneck = model.dyt_config.bottleneck if hasattr(model, "dyt_config") else 0
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
        for block in stage.blocks:
            c, (height, width) = block.dim, block.input_resolution
            window_h, window_w = block.window_size
            padded = (
                math.ceil(height / window_h) * window_h * math.ceil(width / window_w) * window_w
            )
            hidden = block.mlp.fc1.out_features
            mlp_tokens = tokens if active[index] is None else active[index]
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
