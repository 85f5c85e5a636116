"""GroupMixFormer: a hierarchical backbone of Group-Mix Attention (GMA) blocks.

Structure and state-dict names follow the released code (AILab-CVC/GroupMixFormer), so its
checkpoints load strictly. The attention is the released *factorized* form (softmax over tokens
on K, then Q (K^T V), plus a conv relative-position term), not softmax(Q K^T) V.

Each attention module has two numerically equivalent forward paths:

* the reference path, op for op as released: q/k/v stacked as one batch of 3B images, one module
  call per branch. Training always uses it (its BatchNorms must see q, k and v together).
* the fused inference path (default in eval mode with autograd off): BatchNorms folded, the qkv
  rows grouped by segment so that each depthwise conv runs once, with its real kernel, over the
  q, k and v channels of its segment in the channels-last (token-major) layout, the 1x1 convs as
  matrix products accumulated in place, and attention kept token-major (no transposing copies).
"""

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers.drop import DropPath
from timm.layers.weight_init import trunc_normal_
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    register_notrace_function,
    register_notrace_module,
)
from timm.models._features import feature_take_indices
from torch import nn
from torch._jit_internal import is_scripting  # torch.jit.is_scripting, for type checkers
from torch.utils.checkpoint import checkpoint

from groupmixformer.config import GroupMixFormerConfig, get_config
from papers_shared.checkpoint import unwrap_state_dict

__all__ = [
    "SeparableConv2d",
    "ConvStem",
    "PatchEmbedLayer",
    "ConvPosEnc",
    "Aggregator",
    "ConvRelPosEnc",
    "GroupMixAttention",
    "GMABlock",
    "GMAStage",
    "GroupMixFormer",
    "checkpoint_filter_fn",
    "factorized_attention",
]

logger = logging.getLogger(__name__)

NUM_SEGMENTS = 5  # q/k/v channels split into 5 segments: 4 aggregator branches + 1 local branch
CRPE_WINDOWS = ((3, 2), (5, 3), (7, 3))  # (kernel, heads) of the conv relative position encoding


def tokens_to_image(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, N, C) tokens -> (B, C, H, W) image, a channels-last view when ``x`` is contiguous."""
    batch, _, channels = x.shape
    return x.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def image_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) tokens; a view for channels-last inputs."""
    batch, channels, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)


def _depthwise_channels_last(x: torch.Tensor, conv: nn.Module | torch.Tensor) -> torch.Tensor:
    """Depthwise conv (padding k//2) of a (B, C, H, W) image in the channels-last layout.

    oneDNN's channels-last depthwise kernels are several times faster on CPU than its NCHW ones
    for 3x3 and 5x5, and a strided channel slice takes a slow path: copy it first.
    ``conv`` is a Conv2d module or a bias-free (C, 1, k, k) weight. Returns a channels-last image.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(conv, torch.Tensor):
        return F.conv2d(x, conv, padding=conv.shape[-1] // 2, groups=conv.shape[0])
    return conv(x)


def _fold_batchnorm(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = scale * x + shift; returns (scale, shift), each (C,)."""
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    scale = bn.weight * torch.rsqrt(var + bn.eps)
    return scale, bn.bias - mean * scale


def factorized_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> torch.Tensor:
    """scale * q (softmax_N(k)^T v), the released "efficient" attention (no softmax on q).

    q, k, v: (B, h, N, d); the softmax normalises each channel of k over the N tokens.
    Returns (B, h, N, d).
    """
    context = k.softmax(dim=2).transpose(-1, -2) @ v  # (B, h, d, d)
    return scale * (q @ context)


class Mlp(nn.Module):
    """fc1 (C -> hidden), exact GELU, fc2 (hidden -> C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv (``conv1``) then 1x1 conv (``pointwise_conv``), both without bias."""

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_chans, in_chans, kernel_size, stride, padding, groups=in_chans, bias=False
        )
        self.pointwise_conv = nn.Conv2d(in_chans, out_chans, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.conv1(x))


class ConvStem(nn.Module):
    """Two stride-2 3x3 convs (with bias) + BN + Hardswish: (B, in, H, W) -> (B, C0, H/4, W/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        mid = embed_dim // 2
        self.proj1 = nn.Conv2d(in_chans, mid, 3, stride=2, padding=1)
        self.norm1 = nn.BatchNorm2d(mid)
        self.act1 = nn.Hardswish()
        self.proj2 = nn.Conv2d(mid, embed_dim, 3, stride=2, padding=1)
        self.norm2 = nn.BatchNorm2d(embed_dim)
        self.act2 = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.proj1(x)))
        return self.act2(self.norm2(self.proj2(x)))


class PatchEmbedLayer(nn.Module):
    """Separable 3x3 conv (stride 1 or 2) + BN + Hardswish; returns tokens and the real grid."""

    def __init__(self, in_chans: int, embed_dim: int, stride: int) -> None:
        super().__init__()
        self.proj = SeparableConv2d(in_chans, embed_dim, 3, stride, 1)
        self.norm = nn.BatchNorm2d(embed_dim)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: (B, C_in, H, W) -> tokens (B, H'*W', C), (H', W') read from the conv output."""
        x = self.act(self.norm(self.proj(x)))
        return image_to_tokens(x), (x.shape[2], x.shape[3])


class ConvPosEnc(nn.Module):
    """Conditional position encoding: x + DWConv3x3(x) on the image layout (``proj``, with bias)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        image = tokens_to_image(x, *size)
        return image_to_tokens(self.proj(image) + image)


class LocalBranch(nn.Module):
    """The non-attention segment (``agg0``): SepConv3x3 on [q4; k4; v4] (3c -> c), LN, Hardswish."""

    def __init__(self, seg_dim: int) -> None:
        super().__init__()
        self.conv = SeparableConv2d(seg_dim * 3, seg_dim, 3, 1, 1)
        self.norm = nn.LayerNorm(seg_dim)  # default eps 1e-5, unlike the blocks' 1e-6
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3c, H, W) -> (B, N, c)."""
        return self.act(self.norm(image_to_tokens(self.conv(x))))


class FusedAggregatorWeights(NamedTuple):
    """Aggregator weights for the fused eval path; c = channels per segment.

    identity_scale, identity_shift: (c,) ``norm0`` of segment 0 as y = scale * x + shift.
    depthwise: kernels (3c, 1, k, k) for k = 3, 5, 7 over [q_s; k_s; v_s] of segments 1-3.
    pointwise, pointwise_bias: (c, c) and (c,) per segment 1-3, with ``norm1-3`` folded in.
    local_depthwise (3c, 1, 3, 3), local_pointwise (c, 3c): ``agg0``'s separable conv.
    """

    identity_scale: torch.Tensor
    identity_shift: torch.Tensor
    depthwise: tuple[torch.Tensor, ...]
    pointwise: tuple[torch.Tensor, ...]
    pointwise_bias: tuple[torch.Tensor, ...]
    local_depthwise: torch.Tensor
    local_pointwise: torch.Tensor


class Aggregator(nn.Module):
    """Group aggregators shared by q, k and v (identity / SepConv 3, 5, 7, each + BN + Hardswish)
    on segments 0-3, and the local branch ``agg0`` on segment 4."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        seg = dim // NUM_SEGMENTS
        self.seg_dim = seg
        self.norm0 = nn.BatchNorm2d(seg)
        self.act0 = nn.Hardswish()
        self.agg1 = SeparableConv2d(seg, seg, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(seg)
        self.act1 = nn.Hardswish()
        self.agg2 = SeparableConv2d(seg, seg, 5, 1, 2)
        self.norm2 = nn.BatchNorm2d(seg)
        self.act2 = nn.Hardswish()
        self.agg3 = SeparableConv2d(seg, seg, 7, 1, 3)
        self.norm3 = nn.BatchNorm2d(seg)
        self.act3 = nn.Hardswish()
        self.agg0 = LocalBranch(seg)

    def forward(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """qkv: (3B, C, H, W), ordered [q of all samples; k; v] -> (3B, 4c, H, W), local (B, N, c).

        Every BN sees all 3B images, so in training its statistics are joint over q, k and v.
        """
        seg = self.seg_dim
        batch3, _, height, width = qkv.shape
        parts = qkv.split(seg, dim=1)
        local = parts[4].reshape(3, batch3 // 3, seg, height, width).transpose(0, 1)
        local = self.agg0(local.reshape(batch3 // 3, 3 * seg, height, width))
        mixed = torch.cat(
            [
                self.act0(self.norm0(parts[0])),
                self.act1(self.norm1(self.agg1(parts[1]))),
                self.act2(self.norm2(self.agg2(parts[2]))),
                self.act3(self.norm3(self.agg3(parts[3]))),
            ],
            dim=1,
        )
        return mixed, local

    def fused_weights(self) -> FusedAggregatorWeights:
        """Eval-mode weights with the BNs folded into the pointwise convs (see the NamedTuple).

        The depthwise kernels of the aggregator branches are repeated three times, for the q, k
        and v channels of their segment; the local branch's kernel already covers [q4; k4; v4].
        """
        folded = [_fold_batchnorm(bn) for bn in (self.norm0, self.norm1, self.norm2, self.norm3)]
        branches = (self.agg1, self.agg2, self.agg3)
        return FusedAggregatorWeights(
            identity_scale=folded[0][0],
            identity_shift=folded[0][1],
            depthwise=tuple(agg.conv1.weight.repeat(3, 1, 1, 1) for agg in branches),
            pointwise=tuple(
                scale[:, None] * agg.pointwise_conv.weight[:, :, 0, 0]
                for (scale, _), agg in zip(folded[1:], branches)
            ),
            pointwise_bias=tuple(shift for _, shift in folded[1:]),
            local_depthwise=self.agg0.conv.conv1.weight,
            local_pointwise=self.agg0.conv.pointwise_conv.weight[:, :, 0, 0],
        )


class ConvRelPosEnc(nn.Module):
    """Conv relative position encoding: depthwise convs on v' (heads split 2/3/3 for k = 3/5/7),
    multiplied elementwise by q'."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.channel_splits = [heads * head_dim for _, heads in CRPE_WINDOWS]
        self.conv_list = nn.ModuleList(
            nn.Conv2d(ch, ch, k, padding=k // 2, groups=ch)
            for (k, _), ch in zip(CRPE_WINDOWS, self.channel_splits)
        )

    def forward(self, q: torch.Tensor, v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """q, v: (B, h, N, d) -> q * conv(v): (B, h, N, d)."""
        batch, heads, num_tokens, head_dim = v.shape
        image = v.permute(0, 1, 3, 2).reshape(batch, heads * head_dim, *size)
        parts = image.split(self.channel_splits, dim=1)
        convolved_parts: list[torch.Tensor] = []
        for i, conv in enumerate(self.conv_list):
            convolved_parts.append(conv(parts[i]))
        convolved = torch.cat(convolved_parts, dim=1)
        convolved = convolved.reshape(batch, heads, head_dim, num_tokens).transpose(2, 3)
        return q * convolved


class FusedAttentionWeights(NamedTuple):
    """Weights of the fused path; c = channels per segment, C = 5c.

    identity_weight: (3, c, C), the q/k/v rows of segment 0 with ``norm0`` folded in.
    mixed_bias: (3, 4c), per q/k/v the bias of the four aggregator outputs (folded BN shifts).
    qkv_weights, qkv_biases: per segment 1-4, the rows [q_s; k_s; v_s], (3c, C) and (3c,).
    """

    identity_weight: torch.Tensor
    mixed_bias: torch.Tensor
    qkv_weights: tuple[torch.Tensor, ...]
    qkv_biases: tuple[torch.Tensor, ...]
    aggregator: FusedAggregatorWeights


class GroupMixAttention(nn.Module):
    """Group-Mix Attention as released: factorized attention over aggregated q/k/v + CRPE, with
    the local branch concatenated before the output projection.

    For head h: A_h = s * q'_h (softmax_N(k'_h)^T v'_h), O_h = A_h + q'_h * CRPE(v')_h,
    s = (C // 8)^-0.5 (from the full width C, as released).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.seg_dim = dim // NUM_SEGMENTS
        self.head_dim = 4 * self.seg_dim // num_heads
        self.use_fused_eval = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(0.0)  # exists in the release, never applied
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)
        self.aggregator = Aggregator(dim)
        self.crpe = ConvRelPosEnc(self.head_dim)

    def uses_fused_path(self) -> bool:
        """The fused path runs in eval mode with gradients off (it writes into buffers in place)."""
        return (
            self.use_fused_eval
            and not self.training
            and not torch.is_grad_enabled()
            and self.aggregator.norm0.running_var is not None  # BN statistics to fold
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C)."""
        if not is_scripting() and self.uses_fused_path():
            return self.forward_fused(x, size)
        return self.forward_reference(x, size)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """q, k, v: (B, h, N, d) -> factorized attention + CRPE, merged head-major: (B, N, h*d)."""
        out = factorized_attention(q, k, v, self.scale) + self.crpe(q, v, size)
        return out.transpose(1, 2).flatten(2)

    def forward_reference(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The released computation: q, k, v as one batch of 3B images through the aggregator."""
        batch, num_tokens, dim = x.shape
        height, width = size
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, dim).permute(2, 0, 1, 3)
        qkv = tokens_to_image(qkv.reshape(3 * batch, num_tokens, dim), height, width)
        mixed, local = self.aggregator(qkv)  # (3B, 4c, H, W), (B, N, c)
        heads = self.num_heads
        mixed = mixed.reshape(3, batch, heads, self.head_dim, num_tokens).transpose(-1, -2)
        out = self._attend(mixed[0], mixed[1], mixed[2], size)
        return self.proj_drop(self.proj(torch.cat([out, local], dim=-1)))

    @torch.jit.unused
    def _fused_params(self) -> FusedAttentionWeights:
        """Fused weights, folded from the current parameters and buffers on every call (a few
        small ops on the weights; nothing is cached, so in-place weight updates are always seen)."""
        seg, dim = self.seg_dim, self.dim
        aggregator = self.aggregator.fused_weights()
        # rows of segment s: [q_s; k_s; v_s], (3c, C)
        weights = self.qkv.weight.view(3, NUM_SEGMENTS, seg, dim).transpose(0, 1)
        weights = list(weights.reshape(NUM_SEGMENTS, 3 * seg, dim))
        bias = self.qkv.bias
        if bias is None:
            bias = weights[0].new_zeros(3 * dim)
        biases = list(bias.view(3, NUM_SEGMENTS, seg).transpose(0, 1).reshape(NUM_SEGMENTS, -1))
        scale = aggregator.identity_scale.repeat(3)  # segment 0: fold norm0 into the rows
        identity_bias = scale * biases[0] + aggregator.identity_shift.repeat(3)
        branch_bias = torch.cat(aggregator.pointwise_bias)
        params = FusedAttentionWeights(
            identity_weight=(scale[:, None] * weights[0]).view(3, seg, dim),
            mixed_bias=torch.cat([identity_bias.view(3, seg), branch_bias.expand(3, -1)], dim=1),
            qkv_weights=tuple(weights[1:]),
            qkv_biases=tuple(biases[1:]),
            aggregator=aggregator,
        )
        return params

    @torch.jit.unused
    def forward_fused(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Inference-only path (no autograd): BNs folded, q, k, v batched per branch; the same
        result as the reference.

        The group aggregators run token-major, (B, N, channels), which is the channels-last
        layout of the depthwise convs: per segment, one matmul gives its q, k and v channels
        (norm0 folded in for segment 0), one depthwise conv runs over all three, and one matmul
        applies the BN-folded pointwise conv. Attention and CRPE stay token-major too: per
        head, two strided matrix products (softmax_N(k')^T v', then q' times it), written straight
        into the projection's input.
        """
        batch, num_tokens, dim = x.shape
        seg, heads, head_dim = self.seg_dim, self.num_heads, self.head_dim
        height, width = size
        weights = self._fused_params()
        agg = weights.aggregator
        # segments 1-4, each (B, N, 3c): [q_s | k_s | v_s]
        segments = [F.linear(x, w, b) for w, b in zip(weights.qkv_weights, weights.qkv_biases)]

        def image(tokens: torch.Tensor) -> torch.Tensor:  # (B, N, ch) -> channels-last view
            return tokens.view(batch, height, width, -1).permute(0, 3, 1, 2)

        def tokens(conv_output: torch.Tensor) -> torch.Tensor:  # channels-last image -> (B, N, ch)
            return conv_output.permute(0, 2, 3, 1).reshape(batch, num_tokens, -1)

        # q', k', v': (3, B, N, 4c), each token-major with head-major channels (h, d); the branches
        # accumulate their pointwise convs into it in place
        mixed = x.new_empty(3, batch, num_tokens, 4 * seg)
        mixed.copy_(weights.mixed_bias[:, None, None])
        rows = mixed.view(3, -1, 4 * seg)  # (3, BN, 4c)
        tokens_2d = x.reshape(-1, dim)
        for part in range(3):  # segment 0: the folded norm0 is all there is before Hardswish
            rows[part, :, :seg].addmm_(tokens_2d, weights.identity_weight[part].t())
        for branch, (segment, kernel, pointwise) in enumerate(
            zip(segments, agg.depthwise, agg.pointwise), start=1
        ):
            conv = tokens(_depthwise_channels_last(image(segment), kernel))
            rows[..., branch * seg : (branch + 1) * seg].baddbmm_(
                conv.view(-1, 3, seg).transpose(0, 1), pointwise.t().expand(3, seg, seg)
            )
        mixed = F.hardswish(mixed, inplace=True)
        local_conv = tokens(_depthwise_channels_last(image(segments[3]), agg.local_depthwise))
        local = F.hardswish(self.aggregator.agg0.norm(F.linear(local_conv, agg.local_pointwise)))

        # the projection's input [O | L], (B, N, C): O = s * q' (softmax_N(k')^T v') + q' * CRPE(v')
        merged = x.new_empty(batch, num_tokens, dim)
        merged[..., 4 * seg :] = local
        out = merged[..., : 4 * seg]
        q, k, v = mixed  # (B, N, 4c) each
        keys = k.softmax(dim=1).mul_(self.scale)  # scale * softmax_N(k')
        for head in range(heads):  # strided per-head products: no transposing copies
            cols = slice(head * head_dim, (head + 1) * head_dim)
            context = torch.bmm(keys[..., cols].transpose(1, 2), v[..., cols])  # (B, d, d)
            torch.bmm(q[..., cols], context, out=out[..., cols])  # (B, N, d) into [O | L]
        v_image = v.view(batch, height, width, 4 * seg).permute(0, 3, 1, 2)
        start = 0
        for conv, part in zip(self.crpe.conv_list, v_image.split(self.crpe.channel_splits, dim=1)):
            cols = slice(start, start + part.shape[1])
            out[..., cols].addcmul_(q[..., cols], tokens(_depthwise_channels_last(part, conv)))
            start = cols.stop
        return self.proj(merged)


# torch.fx: a leaf module (its inference path writes into buffers in place)
register_notrace_module(GroupMixAttention)


class GMABlock(nn.Module):
    """CPE, then x + DropPath(GMA(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float
    ) -> None:
        super().__init__()
        self.cpe = ConvPosEnc(dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.att = GroupMixAttention(dim, num_heads, qkv_bias)
        # one module for both residual branches, as released; each call draws its own mask
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C)."""
        x = self.cpe(x, size)
        x = x + self.drop_path(self.att(self.norm1(x), size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GMAStage(nn.Module):
    """A stack of GMA blocks at one resolution (``gma_stage``)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_paths: Sequence[float],
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.gma_stage = nn.ModuleList(
            GMABlock(dim, num_heads, mlp_ratio, qkv_bias, drop_paths[i]) for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C). The blocks need the grid size besides the tokens, so
        timm's single-input ``checkpoint_seq`` does not apply: each block is checkpointed."""
        for block in self.gma_stage:
            if self.grad_checkpointing and not is_scripting():
                x = cast(torch.Tensor, checkpoint(block, x, size, use_reentrant=False))
            else:
                x = block(x, size)
        return x


def check_image_input(x: torch.Tensor, in_chans: int) -> None:
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            "expected images (B, " + str(in_chans) + ", H, W), got shape " + str(list(x.shape))
        )


# torch.fx: a call in the graph, run on real tensors (fx wraps only names without a leading _)
register_notrace_function(check_image_input)


class GroupMixFormer(nn.Module):
    """GroupMixFormer classifier / backbone (strides 4, 8, 16, 32; channels ``embed_dims``).

    Args mirror :class:`~groupmixformer.config.GroupMixFormerConfig`; ``global_pool`` is
    ``"avg"`` (the release's mean over the map) or ``""`` (no pooling: ``forward`` returns the
    ``norm4``-normalised map). ``backbone_only`` drops ``norm4`` and ``head`` (the release's
    ``return_interm_layers`` mode for dense prediction).
    Input sizes: any size the convs accept; multiples of 32 are the supported ones (the released
    code only runs where ceil(ceil(H/2)/2) is divisible by 8).
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (80, 160, 320, 320),
        depths: Sequence[int] = (2, 4, 12, 4),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        num_heads: int = 8,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.2,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        backbone_only: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(
                f"global_pool must be 'avg' (the release's mean) or '' (none), got {global_pool!r}"
            )
        self.config = GroupMixFormerConfig(
            embed_dims=tuple(embed_dims),
            depths=tuple(depths),
            mlp_ratios=tuple(float(r) for r in mlp_ratios),
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            in_chans=in_chans,
            num_classes=num_classes,
        )
        dims = self.config.embed_dims
        self.embed_dims = dims
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.backbone_only = backbone_only
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False
        self.use_fused_eval = True
        # timm's factory arguments: build on ``device``, then cast to ``dtype``
        with torch.device(device) if device is not None else nullcontext():
            self._build(dims, num_heads, qkv_bias, drop_path_rate, in_chans, num_classes)
        if dtype is not None:
            self.to(dtype)

    def _build(
        self,
        dims: tuple[int, ...],
        num_heads: int,
        qkv_bias: bool,
        drop_path_rate: float,
        in_chans: int,
        num_classes: int,
    ) -> None:
        num_stages = len(dims)
        self.conv_stem = ConvStem(in_chans, dims[0])
        self.patch_embed_layers = nn.ModuleList(
            PatchEmbedLayer(dims[max(i - 1, 0)], dims[i], stride=1 if i == 0 else 2)
            for i in range(num_stages)
        )
        rates = torch.linspace(0, drop_path_rate, sum(self.config.depths), device="cpu").tolist()
        starts = [sum(self.config.depths[:i]) for i in range(num_stages)]
        self.groupmixformer_backbone = nn.ModuleList(
            GMAStage(
                dims[i],
                self.config.depths[i],
                num_heads,
                self.config.mlp_ratios[i],
                qkv_bias,
                rates[starts[i] : starts[i] + self.config.depths[i]],
            )
            for i in range(num_stages)
        )
        self.feature_info = [
            {"num_chs": dims[i], "reduction": 4 * 2**i, "module": f"groupmixformer_backbone.{i}"}
            for i in range(num_stages)
        ]
        self.norm4: nn.Module = nn.Identity() if self.backbone_only else nn.BatchNorm2d(dims[-1])
        self.head: nn.Module = (
            nn.Linear(dims[-1], num_classes)
            if num_classes > 0 and not self.backbone_only
            else nn.Identity()
        )
        self.apply(self._init_weights)

    @classmethod
    def from_config(cls, config: GroupMixFormerConfig, **kwargs: Any) -> "GroupMixFormer":
        return cls(**config.to_dict(), **kwargs)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)  # cut at +-2 (absolute), as timm
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # -- timm model surface ------------------------------------------------------------------

    @torch.jit.ignore()
    def no_weight_decay(self) -> set[str]:
        """Nothing by name: the optimizer skips decay for 1-D parameters and biases."""
        return set()

    @torch.jit.ignore()
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {
            "stem": r"^conv_stem|^patch_embed_layers\.0\.",
            "blocks": r"^groupmixformer_backbone\.(\d+)"
            if coarse
            else [
                (r"^groupmixformer_backbone\.(\d+)\.gma_stage\.(\d+)", None),
                (r"^patch_embed_layers\.(\d+)", (0,)),
                (r"^norm4", (99999,)),
            ],
        }

    @torch.jit.ignore()
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for module in self.modules():
            if isinstance(module, GMAStage):
                module.grad_checkpointing = enable

    @torch.jit.ignore()
    def set_fused_eval(self, enable: bool = True) -> None:
        """Use the fused attention path for inference (eval mode, gradients off; the default) or
        always the release's op order. The fused path also runs the stem channels-last."""
        self.use_fused_eval = enable
        for module in self.modules():
            if isinstance(module, GroupMixAttention):
                module.use_fused_eval = enable

    @torch.jit.ignore()
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a freshly initialised one (``num_classes=0``: identity).

        ``global_pool``: None keeps the current pooling, ``"avg"`` pools, ``""`` removes the
        pooling (``forward`` then returns the ``norm4``-normalised map).
        """
        if self.backbone_only:
            raise ValueError("a backbone_only model has no classifier to reset")
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        if num_classes > 0:
            reference = self.conv_stem.proj1.weight  # the new head follows the model's device/dtype
            self.head = nn.Linear(
                self.num_features, num_classes, device=reference.device, dtype=reference.dtype
            )
            self.head.apply(self._init_weights)
            self.head.train(self.training)
        else:
            self.head = nn.Identity()

    def _use_channels_last(self) -> bool:
        return self.use_fused_eval and not self.training and not torch.is_grad_enabled()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_chans, H, W) -> last stage map (B, C3, H/32, W/32), before ``norm4``."""
        check_image_input(x, self.in_chans)
        if self._use_channels_last():
            # channels-last from the stem on: oneDNN's depthwise convs are much faster in it
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.conv_stem(x)
        for embed, stage in zip(self.patch_embed_layers, self.groupmixformer_backbone):
            tokens, size = embed(x)
            x = tokens_to_image(stage(tokens, size), size[0], size[1])
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """x: (B, C3, h, w) -> norm4 (BatchNorm on the map), spatial mean, head: (B, K).

        Without pooling (``global_pool=""``) the normalised map (B, C3, h, w) is returned.
        """
        x = self.norm4(x)
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_chans, H, W) -> logits (B, K) (pooled features when ``num_classes=0``)."""
        if self.backbone_only:
            raise ValueError("a backbone_only model has no head; use forward_stages")
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore()
    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All stage maps, (B, C_i, H/2^(i+2), W/2^(i+2)), as the release's dense mode."""
        maps = self.forward_intermediates(x, intermediates_only=True)
        assert isinstance(maps, list)
        return maps

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's intermediate-feature API: stage maps at ``indices`` (None: all; an int n: the
        last n; negative indices count from the end), via timm's ``feature_take_indices``.

        Returns the maps (``intermediates_only``) or (final map, maps), where the final map is
        ``forward_features``' output (the last stage run, with ``stop_early``). ``norm`` has no
        effect: the release adds no norm to intermediate maps. ``output_fmt``: NCHW or NHWC.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        stages = len(self.groupmixformer_backbone)
        take_indices, max_index = feature_take_indices(stages, indices)
        last = max_index if (stop_early or intermediates_only) else stages - 1
        check_image_input(x, self.in_chans)
        if self._use_channels_last():
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.conv_stem(x)
        intermediates: list[torch.Tensor] = []
        for i, (embed, stage) in enumerate(
            zip(self.patch_embed_layers, self.groupmixformer_backbone)
        ):
            if i > last:
                break
            tokens, size = embed(x)
            x = tokens_to_image(stage(tokens, size), size[0], size[1])
            if i in take_indices:
                intermediates.append(x.permute(0, 2, 3, 1) if output_fmt == "NHWC" else x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last index; ``prune_head`` also drops the classifier and
        ``norm4`` (which only the head uses), ``prune_norm`` drops ``norm4``. Returns the kept
        indices."""
        take_indices, max_index = feature_take_indices(len(self.groupmixformer_backbone), indices)
        self.groupmixformer_backbone = self.groupmixformer_backbone[: max_index + 1]
        self.patch_embed_layers = self.patch_embed_layers[: max_index + 1]
        if prune_norm or prune_head:
            self.norm4 = nn.Identity()
        if prune_head and not self.backbone_only:
            self.reset_classifier(0, "")
        return take_indices


def checkpoint_filter_fn(
    state_dict: dict[str, Any], model: GroupMixFormer
) -> dict[str, torch.Tensor]:
    """Unwrap a released checkpoint and keep the keys ``model`` can take (timm's filter hook).

    The released files use our key names, so nothing is renamed. A backbone-only model drops
    ``norm4.*`` / ``head.*``; a model with ``num_classes=0`` drops ``head.*``.
    """
    state = unwrap_state_dict(dict(state_dict))
    if model.backbone_only:
        return {k: v for k, v in state.items() if not k.startswith(("norm4.", "head."))}
    if model.num_classes == 0:
        return {k: v for k, v in state.items() if not k.startswith("head.")}
    return state


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv_stem.proj1",
        "classifier": "head",
        "license": "mit",
        "paper_ids": "arXiv:2311.15157",
        "origin_url": "https://github.com/AILab-CVC/GroupMixFormer",
        **kwargs,
    }


# No weights are on any hub: load a released file with
# timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH)).
default_cfgs = generate_default_cfgs(
    {
        "groupmixformer_miny.in1k": _cfg(),
        "groupmixformer_tiny.in1k": _cfg(),
        "groupmixformer_small.in1k": _cfg(),
        "groupmixformer_base.in1k": _cfg(),
        "groupmixformer_large.untrained": _cfg(),
    }
)


def _create_groupmixformer(variant: str, pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    model_args = get_config(variant).to_dict()
    del model_args["num_classes"], model_args["in_chans"]  # timm passes these itself
    return build_model_with_cfg(
        GroupMixFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg={"feature_cls": "getter", "out_indices": out_indices},
        **{**model_args, **kwargs},
    )


@register_model
def groupmixformer_miny(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-M: 5.73M params, 1.35 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_miny", pretrained, **kwargs)


@register_model
def groupmixformer_tiny(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-T: 10.95M params, 3.72 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_tiny", pretrained, **kwargs)


@register_model
def groupmixformer_small(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-S: 22.42M params, 5.16 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_small", pretrained, **kwargs)


@register_model
def groupmixformer_base(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-B: 45.83M params, 17.55 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_base", pretrained, **kwargs)


@register_model
def groupmixformer_large(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-L as released (71.83M / 38.2G, not the published 70.3M / 36.1G; no weights)."""
    return _create_groupmixformer("groupmixformer_large", pretrained, **kwargs)
