"""Transformer and backbone pieces shared by KeViLI and LeViLM (DETR / TransVG conventions).

``EncoderLayer`` is DETR's post-norm layer: positions are added to queries and keys only, never to
values; ``x = norm1(x + drop(attn(x + p, x + p, x))); x = norm2(x + drop(ffn(x)))``. Sequences are
(N, B, C) and key-padding masks are True on padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EncoderLayer",
    "TransformerEncoder",
    "CrossLayer",
    "MLP",
    "PositionEmbeddingSine",
    "TinyBackbone",
]


class _PostNormBlock(nn.Module):
    """Attention (named ``attn_name``), residual + LayerNorm, ReLU FFN, residual + LayerNorm."""

    def __init__(
        self, attn_name: str, d_model: int, nhead: int, dim_feedforward: int, dropout: float
    ) -> None:
        super().__init__()
        self.add_module(attn_name, nn.MultiheadAttention(d_model, nhead, dropout=dropout))
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ffn))


def _xavier_(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class EncoderLayer(_PostNormBlock):
    """Post-norm self-attention layer (d_model, 8 heads, FFN 2048, dropout 0.1, ReLU by default)."""

    self_attn: nn.MultiheadAttention

    def __init__(
        self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1
    ) -> None:
        super().__init__("self_attn", d_model, nhead, dim_feedforward, dropout)

    def forward(
        self, src: torch.Tensor, key_padding_mask: torch.Tensor | None, pos: torch.Tensor | None
    ) -> torch.Tensor:
        """src, pos: (N, B, C); key_padding_mask: (B, N) True on padding."""
        qk = src if pos is None else src + pos
        attn = self.self_attn(
            qk, qk, value=src, key_padding_mask=key_padding_mask, need_weights=False
        )[0]
        return self._finish(src, attn)


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` (keys ``layers.{i}.*``), xavier-uniform on every weight matrix."""

    def __init__(
        self,
        num_layers: int,
        d_model: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )
        _xavier_(self)

    def forward(
        self, src: torch.Tensor, key_padding_mask: torch.Tensor | None, pos: torch.Tensor | None
    ) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, key_padding_mask, pos)
        return src


class EncoderHolder(nn.Module):
    """Holds an encoder as ``.encoder`` (TransVG's ``vl_transformer.encoder`` / DETR's
    ``transformer.encoder`` key prefixes)."""

    def __init__(self, encoder: TransformerEncoder) -> None:
        super().__init__()
        self.encoder = encoder


class CrossLayer(_PostNormBlock):
    """Cross-attention (visual queries, knowledge keys/values) + residual + LayerNorm, FFN + residual +
    LayerNorm (KeViLI's ``"cross"`` fusion)."""

    cross_attn: nn.MultiheadAttention

    def __init__(
        self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 2048, dropout: float = 0.1
    ) -> None:
        super().__init__("cross_attn", d_model, nhead, dim_feedforward, dropout)

    def forward(
        self, visual: torch.Tensor, know: torch.Tensor, know_pad: torch.Tensor
    ) -> torch.Tensor:
        attn = self.cross_attn(
            visual, know, value=know, key_padding_mask=know_pad, need_weights=False
        )[0]
        return self._finish(visual, attn)


class CrossEncoder(nn.Module):
    """``layers.{i}`` :class:`CrossLayer` blocks, xavier-uniform on every weight matrix."""

    def __init__(
        self,
        num_layers: int,
        d_model: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrossLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )
        _xavier_(self)

    def forward(
        self, visual: torch.Tensor, know: torch.Tensor, know_pad: torch.Tensor
    ) -> torch.Tensor:
        for layer in self.layers:
            visual = layer(visual, know, know_pad)
        return visual


class MLP(nn.Module):
    """``layers.{0..n-1}`` Linear layers with ReLU between (TransVG's ``bbox_embed``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class PositionEmbeddingSine(nn.Module):
    """DETR's normalised 2-D sine embedding: (B, H, W) mask (True = pad) -> (B, 2 * num_pos_feats, H, W)."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        not_mask = (~mask).to(dtype)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=dtype, device=mask.device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats
        )
        px = x[..., None] / dim_t
        py = y[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class TinyBackbone(nn.Module):
    """A small stride-32 convolutional net (for tests and the CPU demo; not from the paper)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width // 2, width, width, width * 2, width * 2]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.GroupNorm(1, cout),
                nn.ReLU(inplace=True),
            ]
        self.layers = nn.Sequential(*layers)
        self.num_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.layers(x)}
