"""The light decoder: hierarchical-alignment neck (HA), transformer decoder (GA), projector.

Names follow the official code so that released checkpoints load after stripping ``module.``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pos1d", "pos2d", "HANeck", "GADecoderLayer", "GADecoder", "Projector"]


def _cbr(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(True),
    )


def _dbr(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    """ConvTranspose (no bias) + BN + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(True),
    )


def pos1d(dim: int, length: int) -> torch.Tensor:
    """1-D sine/cosine positions (sin on even, cos on odd channels): (L, dim)."""
    if dim % 2:
        raise ValueError(f"pos1d needs an even dim, got {dim}")
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out


def pos2d(dim: int, height: int, width: int) -> torch.Tensor:
    """2-D sine/cosine positions, row-major tokens: (H*W, dim).

    Channels [0, dim/2) encode the column x, [dim/2, dim) the row y; sin on even, cos on odd
    channels within each half; frequencies exp(-2k ln(1e4) / (dim/2)).
    """
    if dim % 4:
        raise ValueError(f"pos2d needs dim divisible by 4, got {dim}")
    half = dim // 2
    col = pos1d(half, width)  # (W, half)
    row = pos1d(half, height)  # (H, half)
    col = col[None, :, :].expand(height, width, half)
    row = row[:, None, :].expand(height, width, half)
    return torch.cat([col, row], dim=-1).reshape(height * width, dim)


class _TextGate(nn.Module):
    """fi * MHA(query=fi, key=g, value=g) with one key token g (official ``fusion*`` modules)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W), g: (B, C)
        batch, channels, height, width = x.shape
        q = x.flatten(2).permute(2, 0, 1)
        kv = g[None]
        out = self.multihead_attn(q, kv, kv, need_weights=False)[0]
        return x * out.permute(1, 2, 0).reshape(batch, channels, height, width)


class _CoordConv(nn.Module):
    """Append x then y coordinates (linspace -1..1) and apply CBR 3x3."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = _cbr(in_ch + 2, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        xs = torch.linspace(-1, 1, width, device=x.device, dtype=x.dtype)
        ys = torch.linspace(-1, 1, height, device=x.device, dtype=x.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([grid_x, grid_y])[None].expand(batch, -1, -1, -1)
        return self.conv1(torch.cat([x, coords], dim=1))


class HANeck(nn.Module):
    """Hierarchical alignment: three image levels gated by the sentence, merged, CoordConv.

    F1, F2, F3: (B, C_i, H_i, W_i) with fpn_in channels; state: (B, D_out) -> (B, dim, H2, W2).
    strides: (2, 1, 2) for ResNets (F1 is 2x finer, F3 2x coarser than F2), (1, 1, 1) for ViTs.
    """

    def __init__(
        self,
        fpn_in: tuple[int, int, int],
        state_dim: int,
        dim: int = 512,
        strides: tuple[int, int, int] = (2, 1, 2),
        num_heads: int = 8,
    ) -> None:
        super().__init__()
        s3, s4, s5 = strides
        self.txt_proj = nn.Linear(state_dim, dim)
        self.f3_proj = _cbr(fpn_in[0], dim, s3, stride=s3)
        self.f4_proj = _cbr(fpn_in[1], dim, s4, stride=s4)
        self.f5_proj = _dbr(fpn_in[2], dim, s5, stride=s5)
        self.fusion3 = _TextGate(dim, num_heads)
        self.fusion4 = _TextGate(dim, num_heads)
        self.fusion5 = _TextGate(dim, num_heads)
        self.aggr = _cbr(3 * dim, dim, 1)
        self.coordconv = nn.Sequential(_CoordConv(dim, dim), _cbr(dim, dim, 3, padding=1))

    def forward(
        self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor], state: torch.Tensor
    ) -> torch.Tensor:
        g = self.txt_proj(state)
        f3 = self.fusion3(self.f3_proj(feats[0]), g)
        f4 = self.fusion4(self.f4_proj(feats[1]), g)
        f5 = self.fusion5(self.f5_proj(feats[2]), g)
        return self.coordconv(self.aggr(torch.cat([f3, f4, f5], dim=1)))


class GADecoderLayer(nn.Module):
    """CRIS vision-language decoder layer (pre-norm with extra post-attention norms)."""

    def __init__(
        self, dim: int = 512, num_heads: int = 8, dim_ffn: int = 512, dropout: float = 0.1
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.self_attn_norm = nn.LayerNorm(dim)
        self.cross_attn_norm = nn.LayerNorm(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim_ffn),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.LayerNorm(dim_ffn),
            nn.Linear(dim_ffn, dim),
        )
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        vis: torch.Tensor,
        txt: torch.Tensor,
        vis_pos: torch.Tensor,
        txt_pos: torch.Tensor,
        pad_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """vis: (HW, B, C), txt: (L, B, C), vis_pos: (HW, 1, C), txt_pos: (L, 1, C), pad_mask: (B, L)."""
        x = self.norm1(vis)
        q = x + vis_pos
        x = self.self_attn(q, q, x, need_weights=False)[0]
        vis = vis + self.dropout1(self.self_attn_norm(x))
        x = self.norm2(vis)
        x = self.multihead_attn(
            x + vis_pos, txt + txt_pos, txt, key_padding_mask=pad_mask, need_weights=False
        )[0]
        vis = vis + self.dropout2(self.cross_attn_norm(x))
        return vis + self.dropout3(self.ffn(self.norm3(vis)))


class GADecoder(nn.Module):
    """Stack of GA layers with 2-D / 1-D sine positions and a final LayerNorm.

    vis: (B, C, H, W), words: (B, L, C), pad_mask: (B, L) True at padding -> (B, C, H, W).
    """

    def __init__(
        self,
        num_layers: int = 3,
        dim: int = 512,
        num_heads: int = 8,
        dim_ffn: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            GADecoderLayer(dim, num_heads, dim_ffn, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(
        self, vis: torch.Tensor, words: torch.Tensor, pad_mask: torch.Tensor | None
    ) -> torch.Tensor:
        batch, channels, height, width = vis.shape
        if words.shape[-1] != channels:
            raise ValueError(
                f"word features have {words.shape[-1]} channels but the decoder width is {channels}"
            )
        vis_pos = pos2d(channels, height, width).to(vis)[:, None]
        txt_pos = pos1d(channels, words.shape[1]).to(vis)[:, None]
        x = vis.flatten(2).permute(2, 0, 1)
        txt = words.transpose(0, 1)
        for layer in self.layers:
            x = layer(x, txt, vis_pos, txt_pos, pad_mask)
        x = self.norm(x)
        return x.permute(1, 2, 0).reshape(batch, channels, height, width)


class Projector(nn.Module):
    """CRIS projector: upsample the map 4x and convolve it with a per-sample 3x3 kernel from text.

    x: (B, C, H, W), state: (B, D_out) -> logits (B, 1, 4H, 4W).
    """

    def __init__(self, state_dim: int, in_dim: int = 512, kernel_size: int = 3) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.kernel_size = kernel_size
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _cbr(in_dim, in_dim, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _cbr(in_dim, in_dim // 2, 3, padding=1),
            nn.Conv2d(in_dim // 2, in_dim // 2, 1),
        )
        self.txt = nn.Linear(state_dim, in_dim // 2 * kernel_size * kernel_size + 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        x = self.vis(x)
        batch, channels, height, width = x.shape
        params = self.txt(state)
        weight = params[:, :-1].reshape(batch, channels, self.kernel_size, self.kernel_size)
        bias = params[:, -1]
        out = F.conv2d(
            x.reshape(1, batch * channels, height, width),
            weight,
            bias=bias,
            padding=self.kernel_size // 2,
            groups=batch,
        )
        return out.transpose(0, 1)
