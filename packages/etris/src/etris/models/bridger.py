"""The Bridger: small adapters that exchange information between the frozen image and text towers.

At three stages (after every third of the text blocks and the matching image stage) both
modalities are projected to a d-dimensional space, attend to each other, are projected back and
added residually into their towers (the paper, Sec. 3.2; module names follow the official code).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["FullInteractor", "GatedInteractor", "Bridger"]


class FullInteractor(nn.Module):
    """Post-norm transformer-decoder layer (ResNet Bridger): self-attn, cross-attn, FFN 2d.

    query: (Nq, B, d), memory: (Nm, B, d) -> (Nq, B, d). No key-padding mask (padded words
    take part, as in the official code).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(dim, 2 * dim)
        self.linear2 = nn.Linear(2 * dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = query
        x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))
        attended = self.multihead_attn(x, memory, memory, need_weights=False)[0]
        x = self.norm2(x + self.dropout2(attended))
        ffn = self.linear2(self.dropout(torch.relu(self.linear1(x))))
        return self.norm3(x + self.dropout3(ffn))


class GatedInteractor(nn.Module):
    """ViT Bridger interactor: query * CrossAttn(query, memory); no norm, FFN or dropout."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return query * self.multihead_attn(query, memory, memory, need_weights=False)[0]


def _rn_zoom(stage: int, channels: int, dim: int) -> tuple[nn.Module, nn.Module]:
    """ResNet zoom layers (bare convolutions, no bias): C3 down 2x, C4 1x1, C5 up 2x."""
    if stage == 0:
        return (
            nn.Conv2d(channels, dim, 2, stride=2, bias=False),
            nn.ConvTranspose2d(dim, channels, 2, stride=2, bias=False),
        )
    if stage == 1:
        return nn.Conv2d(channels, dim, 1, bias=False), nn.ConvTranspose2d(
            dim, channels, 1, bias=False
        )
    return (
        nn.ConvTranspose2d(channels, dim, 2, stride=2, bias=False),
        nn.Conv2d(dim, channels, 2, stride=2, bias=False),
    )


def _vit_zoom(stage: int, channels: int, dim: int) -> tuple[nn.Module, nn.Module]:
    """ViT zoom layers: 1x1 conv / transposed conv + BN + ReLU (kinds swap at the last stage)."""
    down: type[nn.Conv2d] | type[nn.ConvTranspose2d] = (
        nn.Conv2d if stage < 2 else nn.ConvTranspose2d
    )
    up: type[nn.Conv2d] | type[nn.ConvTranspose2d] = nn.ConvTranspose2d if stage < 2 else nn.Conv2d
    return (
        nn.Sequential(down(channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(True)),
        nn.Sequential(up(dim, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)),
    )


class Bridger(nn.Module):
    """Three-stage Bridger for a ResNet ("full" interactor) or ViT ("gated") image tower.

    Args:
        stage_channels: image channels at the three fusion points (RN50: 512, 1024, 2048).
        text_width: text tower width (512).
        dim: Bridger width d (64).
        is_vit: ViT zoom layers (1x1 conv + BN + ReLU) instead of ResNet ones.
        interactor: "full" or "gated".
        num_heads: interactor heads (4 RN / 8 ViT in the official code).
        dropout: dropout of the "full" interactor.
    """

    def __init__(
        self,
        stage_channels: tuple[int, int, int],
        text_width: int,
        dim: int = 64,
        is_vit: bool = False,
        interactor: Literal["full", "gated"] = "full",
        num_heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"Bridger dim must be divisible by its heads, got {dim} and {num_heads}"
            )
        zoom = _vit_zoom if is_vit else _rn_zoom
        pairs = [zoom(s, c, dim) for s, c in enumerate(stage_channels)]
        self.zoom_in = nn.ModuleList(p[0] for p in pairs)
        self.zoom_out = nn.ModuleList(p[1] for p in pairs)
        self.linear1 = nn.ModuleList(nn.Linear(text_width, dim) for _ in range(3))
        self.linear2 = nn.ModuleList(nn.Linear(dim, text_width) for _ in range(3))
        self.ln_v = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.ln_t = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))

        def make() -> nn.Module:
            if interactor == "full":
                return FullInteractor(dim, num_heads, dropout)
            return GatedInteractor(dim, num_heads)

        self.fusion_v = nn.ModuleList(make() for _ in range(3))
        self.fusion_t = nn.ModuleList(make() for _ in range(3))
        self.dim = dim
        self.is_vit = is_vit
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: Linear (incl. attention out_proj) N(0, 0.02) / zero bias; convs Kaiming
        normal (fan_out, relu); attention in_proj, LayerNorm and BatchNorm keep PyTorch defaults."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def fuse(
        self,
        stage: int,
        vis: torch.Tensor,
        txt: torch.Tensor,
        prev: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One fusion. vis: (B, C, H, W) image map (ViT: patch tokens as a map), txt: (B, L, C_t).

        Returns the updated vis and txt and this stage's interactor inputs (the cross-stage skip
        of the next stage). Both interactors read the same pre-update features.
        """
        v = self.zoom_in[stage](vis)
        batch, _, height, width = v.shape
        v = v.flatten(2).permute(2, 0, 1)  # (hw, B, d)
        t = self.linear1[stage](txt).transpose(0, 1)  # (L, B, d)
        if stage > 0:
            if prev is None:
                raise ValueError("stages 1 and 2 need the previous stage's features")
            if prev[0].shape != v.shape:
                raise ValueError(
                    f"Bridger stages must share one grid; stage {stage} has {height}x{width} "
                    f"tokens {tuple(v.shape)}, the previous stage {tuple(prev[0].shape)}"
                )
            v = self.ln_v[stage - 1](v + prev[0])
            t = self.ln_t[stage - 1](t + prev[1])
        new_v = self.fusion_v[stage](v, t)
        new_t = self.fusion_t[stage](t, v)
        new_v = new_v.permute(1, 2, 0).reshape(batch, self.dim, height, width)
        vis = vis + self.zoom_out[stage](new_v)
        txt = txt + self.linear2[stage](new_t).transpose(0, 1)
        return vis, txt, (v, t)
