"""DyT for video (paper section 4.2): per-frame DyT ViT + one attentive pooling block.

Each of T frames goes through the DyT ViT as an image; the final-normed tokens of all frames
(each frame's CLS included) are pooled by a learnable query with one cross-attention block
(no residual, no MLP), then classified. Official key names: ``query_token``,
``attentive_blocks.norm_{q,k,v}``, ``attentive_blocks.cross_attn.{q,k,v,proj,q_bias,v_bias}``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from dyt.config import DyTConfig
from dyt.models.dispatch import get_dyt_config
from dyt.models.dyt_vit import convert_vit

__all__ = ["CrossAttention", "AttentiveBlock", "DyTVideoTransformer", "convert_vit_to_video"]


class CrossAttention(nn.Module):
    """Multi-head cross-attention; q and v carry a separate bias, the key bias is fixed at 0."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(embed_dim, embed_dim, bias=False)
        self.k = nn.Linear(embed_dim, embed_dim, bias=False)
        self.v = nn.Linear(embed_dim, embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query: (B, Q, C), key/value: (B, M, C) -> (B, Q, C)."""
        batch, _, channels = query.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, -1, heads, channels // heads).transpose(1, 2)

        q = split(F.linear(query, self.q.weight, self.q_bias))
        k = split(self.k(key))
        v = split(F.linear(value, self.v.weight, self.v_bias))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, -1, channels))


class AttentiveBlock(nn.Module):
    """``cross_attn(norm_q(query), norm_k(tokens), norm_v(tokens))``: no residual, no MLP."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(embed_dim, eps=1e-6)
        self.norm_k = nn.LayerNorm(embed_dim, eps=1e-6)
        self.norm_v = nn.LayerNorm(embed_dim, eps=1e-6)
        self.cross_attn = CrossAttention(embed_dim, num_heads)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.cross_attn(self.norm_q(query), self.norm_k(tokens), self.norm_v(tokens))


class DyTVideoTransformer(nn.Module):
    """A DyT ViT applied per frame, pooled by one attentive block. Built by :func:`convert_vit_to_video`.

    forward(video (B, 3, T, H, W)) -> logits (B, K). The ViT sits under ``backbone`` (its own
    head removed); ``query_token``, ``attentive_blocks`` and ``head`` are top-level, so an
    official video checkpoint maps onto this model by prefixing its ViT keys with ``backbone.``
    (:func:`dyt.convert.official_video_to_ours`).
    """

    def __init__(
        self, backbone: VisionTransformer, num_classes: int, num_frames: int, head_init_std: float
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_frames = num_frames
        self.num_classes = num_classes
        embed_dim = int(backbone.embed_dim)
        blocks: Any = backbone.blocks
        first_block = blocks[0]
        num_heads = int(first_block.attn.num_heads)
        reference = next(backbone.parameters())
        self.query_token = nn.Parameter(torch.zeros(1, 1, embed_dim, device=reference.device))
        self.attentive_blocks = AttentiveBlock(embed_dim, num_heads).to(reference.device)
        self.head = nn.Linear(embed_dim, num_classes).to(reference.device)
        nn.init.trunc_normal_(self.head.weight, std=head_init_std)
        nn.init.zeros_(self.head.bias)

    @property
    def dyt_config(self) -> DyTConfig:
        return get_dyt_config(self.backbone)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, 3, T, H, W) -> logits (B, K)."""
        if video.dim() != 5:
            raise ValueError(f"expected a clip (B, C, T, H, W), got shape {tuple(video.shape)}")
        batch, channels, frames, height, width = video.shape
        images = video.transpose(1, 2).reshape(batch * frames, channels, height, width)
        tokens = self.backbone.forward_features(images)  # (B*T, N, C), final norm applied
        tokens = tokens.reshape(batch, frames * tokens.shape[1], tokens.shape[2])
        pooled = self.attentive_blocks(self.query_token.expand(batch, -1, -1), tokens)
        return self.head(self.backbone.head_drop(pooled[:, 0]))


def convert_vit_to_video(
    model: nn.Module,
    config: DyTConfig | None = None,
    *,
    num_classes: int,
    num_frames: int = 8,
    head_init_std: float = 0.01,
    **overrides: Any,
) -> DyTVideoTransformer:
    """Convert a timm ViT to DyT and add the attentive pooling (query zero-initialised).

    Defaults without ``config``: the paper's video setting (d=64, s=0.1, Sec. 4.2).
    """
    if config is None and not overrides:
        config = DyTConfig(bottleneck=64, adapter_scale=0.1)
    vit = convert_vit(model, config, num_classes=0, **overrides)
    return DyTVideoTransformer(vit, num_classes, num_frames, head_init_std)
