"""DyT on timm Vision Transformers: dispatch blocks, ``convert_vit`` and the timm names.

``convert_vit`` swaps each timm ``Block`` for a DyT block that holds the block's own layers under
their timm names (``norm1``, ``attn``, ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ``ls2``,
``drop_path2``) and adds the official DyT modules ``adaptmlp.{down_proj,up_proj}`` and
``mlp_token_select.mlp_head``. The model stays a timm ``VisionTransformer``: its keys are the
official code's, so official checkpoints load strictly, and every timm method
(``forward_features``, ``forward_intermediates``, ``features_only``, TorchScript, fx) works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
    register_notrace_function,
    register_notrace_module,
)
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as _vit_checkpoint_filter_fn
from torch import nn
from torch._jit_internal import is_scripting

from dyt.config import DyTConfig
from dyt.models.dispatch import DispatchBlock, is_dyt_model
from dyt.models.layers import Adapter, MoEAdapter, TokenDispatcher

__all__ = [
    "DyTBlock",
    "AttnDispatchBlock",
    "AttnMLPDispatchBlock",
    "LayerDispatchBlock",
    "convert_vit",
    "checkpoint_filter_fn",
    "TIMM_BLOCK_PARTS",
    "add_on_active_rows",
]

logger = logging.getLogger(__name__)

TIMM_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
DYT_MODULE_NAMES = (
    "adaptmlp",
    "mlp_token_select",
    "adaptattn",
    "attn_token_select",
    "adaptlayer",
    "layer_token_select",
)


def make_adapter(config: DyTConfig, embed_dim: int) -> nn.Module:
    """The adapter of ``config``: :class:`Adapter`, or :class:`MoEAdapter` for num_experts > 1."""
    if config.num_experts > 1:
        return MoEAdapter(
            embed_dim,
            config.bottleneck,
            num_experts=config.num_experts,
            scale=config.adapter_scale,
            dropout=config.adapter_dropout,
        )
    return Adapter(
        embed_dim,
        config.bottleneck,
        scale=config.adapter_scale,
        dropout=config.adapter_dropout,
        layernorm=config.adapter_layernorm,
    )


def _with_prefix(mask: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """mask: (B, N, 1) over patch tokens -> (B, P + N, 1) with the P prefix tokens set to 1."""
    if num_prefix_tokens == 0:
        return mask
    ones = mask.new_ones(mask.shape[0], num_prefix_tokens, 1)
    return torch.cat([ones, mask], dim=1)


@register_notrace_function
def add_on_active_rows(
    x: torch.Tensor, mask: torch.Tensor, update_fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """x + update_fn(active rows), inactive rows untouched: the packed (real-skipping) update.

    x: (B, T, C), mask: (B, T, 1) in {0, 1}; update_fn: (R, C) -> (R, C) on the R active rows
    of the whole batch packed together (variable count per sample).
    """
    batch, tokens, channels = x.shape
    flat = x.reshape(batch * tokens, channels)
    rows = mask.reshape(-1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return x
    update = update_fn(flat.index_select(0, rows))
    return flat.index_add(0, rows, update.to(flat.dtype)).view(batch, tokens, channels)


class _ViTDispatchBlock(DispatchBlock):
    """Holds a frozen timm block's layers under their timm names."""

    def __init__(self, block: Any, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(config.sparse_inference)
        missing = [name for name in TIMM_BLOCK_PARTS if not hasattr(block, name)]
        if missing:
            raise TypeError(
                f"DyT needs timm pre-norm Blocks with {TIMM_BLOCK_PARTS}; "
                f"{type(block).__name__} lacks {missing}"
            )
        self.norm1: nn.Module = block.norm1
        self.attn: nn.Module = block.attn
        self.ls1: nn.Module = block.ls1
        self.drop_path1: nn.Module = block.drop_path1
        self.norm2: nn.Module = block.norm2
        self.mlp: nn.Module = block.mlp
        self.ls2: nn.Module = block.ls2
        self.drop_path2: nn.Module = block.drop_path2
        self.embed_dim = int(block.norm1.weight.shape[0])
        self.num_prefix_tokens = num_prefix_tokens

    def _attention(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention branch ``drop_path1(ls1(attn(norm1(x))))``.

        key_mask: (B, T) bool (True = may be attended to) or None; attn_mask: additive
        (1 or B, heads, T, T) bias (e.g. relative position) or None.
        """
        if key_mask is not None:
            # A sample with no active token at all (possible without prefix tokens) would give
            # NaN rows; its attention output is discarded (x 0), so let it attend to everything.
            key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
            allowed = key_mask[:, None, None, :]  # (B, 1, 1, T)
            attn_mask = (
                allowed if attn_mask is None else attn_mask.masked_fill(~allowed, float("-inf"))
            )
        return self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def _packed_mlp(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x + MLP on active rows only. x: (B, T, C), mask: (B, T, 1) in {0, 1}."""
        batch, tokens, channels = x.shape
        flat = x.reshape(batch * tokens, channels)
        rows = mask.reshape(-1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return x
        update = self.ls2(self.mlp(self.norm2(flat.index_select(0, rows))))
        return flat.index_add(0, rows, update.to(flat.dtype)).view(batch, tokens, channels)

    def _dispatched_mlp(
        self, x: torch.Tensor, mask: torch.Tensor, adapter_out: torch.Tensor
    ) -> torch.Tensor:
        """``x + m * MLP(x) + adapter``: complete, packed (eval) or dense masked."""
        if self.complete:
            return x + self._mlp(x) + adapter_out
        full = _with_prefix(mask, self.num_prefix_tokens)
        # the packed path needs data-dependent shapes, which meta tensors cannot give
        if self.sparse_inference and not self.training and not x.is_meta:
            return self._packed_mlp(x, full) + adapter_out
        return x + full * self._mlp(x) + adapter_out

    @torch.jit.unused
    def _per_sample_update(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        update_fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """x + update_fn(active tokens) for each sample, inactive tokens untouched.

        x: (B, T, C), mask: (B, T, 1) in {0, 1}; update_fn: (1, a, C) -> (1, a, C). Attention
        mixes tokens, so each sample's a active tokens are packed on their own (no padding):
        they attend only among themselves, exactly like key masking on the dense path.
        """
        batch, tokens, channels = x.shape
        rows, updates = [], []
        for sample in range(batch):
            active = mask[sample, :, 0].nonzero().squeeze(1)
            if active.numel() == 0:
                continue
            updates.append(update_fn(x[sample, active].unsqueeze(0))[0])
            rows.append(active + sample * tokens)
        if not rows:
            return x
        flat = x.reshape(batch * tokens, channels)
        update = torch.cat(updates).to(flat.dtype)
        return flat.index_add(0, torch.cat(rows), update).view(batch, tokens, channels)

    @torch.jit.unused
    def _dispatched_attention(
        self, x: torch.Tensor, mask: torch.Tensor, adapter_out: torch.Tensor
    ) -> torch.Tensor:
        """Residual + attention on the active tokens only + adapter (attention dispatch).

        mask: (B, N, 1) patch mask. Dense path: key masking, inactive rows multiplied by 0.
        Packed path (eval): per-sample attention over the active tokens.
        """
        if self.complete:
            return x + self._attention(x) + adapter_out
        full = _with_prefix(mask, self.num_prefix_tokens)
        if self.sparse_inference and not self.training and not x.is_meta:
            return self._per_sample_update(x, full, self._attention) + adapter_out
        return x + full * self._attention(x, key_mask=full.squeeze(-1) > 0.5) + adapter_out


class DyTBlock(_ViTDispatchBlock):
    """MLP dispatch (the paper's default, Eq. 5)::

        x = x + drop_path1(ls1(attn(norm1(x))))          # all tokens
        m = TD(x)                                         # prefix tokens forced to 1
        out = x + m * drop_path2(ls2(mlp(norm2(x)))) + adapter(x)

    TD and adapter read the raw residual stream (no LayerNorm). In eval with
    ``sparse_inference`` the active rows of the whole batch are gathered, pushed through the MLP
    and scattered back.
    """

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptmlp = make_adapter(config, self.embed_dim)
        self.mlp_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C). attn_mask: optional additive (1 or B, heads, T, T) bias."""
        if is_causal:
            raise ValueError("DyT blocks do not support causal attention")
        x = x + self._attention(x, attn_mask=attn_mask)
        mask, logits = self.mlp_token_select(x[:, self.num_prefix_tokens :])
        x = self._dispatched_mlp(x, mask, self.adaptmlp(x))
        if not is_scripting():
            self._record(mask, logits)
        return x


class AttnDispatchBlock(_ViTDispatchBlock):
    """Attention dispatch (paper Sec. 3.3, experimental, no reference code).

    The TD sits before attention; only active tokens are updated by attention, and they attend
    only to active tokens (key masking on the dense path, in training and inference alike); the
    adapter is parallel to attention; the MLP is dense. In packed eval each sample's active
    tokens attend among themselves (same function, real skipping).
    """

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptattn = make_adapter(config, self.embed_dim)
        self.attn_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    @torch.jit.unused
    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("attention dispatch takes no extra attention mask")
        mask, logits = self.attn_token_select(x[:, self.num_prefix_tokens :])
        x = self._dispatched_attention(x, mask, self.adaptattn(x))
        x = x + self._mlp(x)
        self._record(mask, logits)
        return x


class AttnMLPDispatchBlock(_ViTDispatchBlock):
    """Attention-MLP dispatch: two TDs and two adapters per block (experimental)."""

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptattn = make_adapter(config, self.embed_dim)
        self.attn_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)
        self.adaptmlp = make_adapter(config, self.embed_dim)
        self.mlp_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    @torch.jit.unused
    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("attention-MLP dispatch takes no extra attention mask")
        attn_mask_, attn_logits = self.attn_token_select(x[:, self.num_prefix_tokens :])
        x = self._dispatched_attention(x, attn_mask_, self.adaptattn(x))
        self._record(attn_mask_, attn_logits)
        mlp_mask, mlp_logits = self.mlp_token_select(x[:, self.num_prefix_tokens :])
        x = self._dispatched_mlp(x, mlp_mask, self.adaptmlp(x))
        self._record(mlp_mask, mlp_logits)
        return x


class LayerDispatchBlock(_ViTDispatchBlock):
    """Layer dispatch: one TD and one adapter parallel to the whole layer (experimental).

    Inactive tokens skip attention and MLP (they are not attended to either); in packed eval
    each sample's active tokens run the whole layer packed.
    """

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptlayer = make_adapter(config, self.embed_dim)
        self.layer_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    @torch.jit.unused
    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("layer dispatch takes no extra attention mask")
        mask, logits = self.layer_token_select(x[:, self.num_prefix_tokens :])
        adapter_out = self.adaptlayer(x)
        if self.complete:
            h = x + self._attention(x)
            h = h + self._mlp(h)
        elif self.sparse_inference and not self.training and not x.is_meta:
            full = _with_prefix(mask, self.num_prefix_tokens)
            h = self._per_sample_update(x, full, self._layer_update)
        else:
            full = _with_prefix(mask, self.num_prefix_tokens)
            h = x + self._attention(x, key_mask=full.squeeze(-1) > 0.5)
            h = h + self._mlp(h)
            h = x + full * (h - x)
        self._record(mask, logits)
        return h + adapter_out

    def _layer_update(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the frozen layer adds to the tokens it processes: (1, a, C) -> (1, a, C)."""
        attended = self._attention(tokens)
        return attended + self._mlp(tokens + attended)


for _block_type in (DyTBlock, AttnDispatchBlock, AttnMLPDispatchBlock, LayerDispatchBlock):
    register_notrace_module(_block_type)  # fx treats DyT blocks as leaves (data-dependent paths)

BLOCK_TYPES: dict[str, type[_ViTDispatchBlock]] = {
    "mlp": DyTBlock,
    "attn": AttnDispatchBlock,
    "attn_mlp": AttnMLPDispatchBlock,
    "layer": LayerDispatchBlock,
}


def convert_vit(
    model: nn.Module,
    config: DyTConfig | None = None,
    *,
    num_classes: int | None = None,
    head_init_std: float = 0.01,
    **overrides: Any,
) -> VisionTransformer:
    """Turn a timm ``VisionTransformer`` into a DyT model, in place, and return it.

    Each block is replaced by a DyT block holding the block's own (frozen) layers; the model
    keeps its class, so it is still a timm ``VisionTransformer`` whose ``forward`` returns logits
    (use :func:`dyt.forward_dyt` for the dispatcher masks). Adapters, token dispatchers and the
    classifier head are trainable. ``overrides`` are :class:`DyTConfig` fields
    (``bottleneck=8, rate=0.5, adapter_scale=1.0``). ``num_classes`` replaces the head
    (trunc-normal std ``head_init_std``, bias 0).
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"convert_vit expects a timm VisionTransformer, got {type(model).__name__}")
    if is_dyt_model(model):
        raise ValueError("model is already a DyT model")
    config = replace(config, **overrides) if config is not None else DyTConfig(**overrides)
    block_type = BLOCK_TYPES[config.dispatch]
    if config.dispatch != "mlp":
        logger.info("dispatch=%r is experimental (no reference implementation)", config.dispatch)
    for param in model.parameters():
        param.requires_grad_(False)
    prefix = int(model.num_prefix_tokens)
    reference = next(model.parameters())
    blocks: Any = model.blocks
    new_blocks = [block_type(block, config, prefix) for block in blocks]
    model.blocks = nn.Sequential(*new_blocks).to(device=reference.device, dtype=reference.dtype)
    if num_classes is not None:
        model.reset_classifier(num_classes)
        if isinstance(model.head, nn.Linear):
            nn.init.trunc_normal_(model.head.weight, std=head_init_std)
            nn.init.zeros_(model.head.bias)
    for param in model.head.parameters():
        param.requires_grad_(True)
    vars(model)["dyt_config"] = config  # a plain attribute beside the modules
    return model


# --- timm registration -------------------------------------------------------------------------


def _is_dyt_key(key: str) -> bool:
    return any(f".{name}." in key for name in DYT_MODULE_NAMES)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: VisionTransformer) -> dict:
    """Pre-trained timm ViT weights for a ``dyt_vit_*`` model: timm's own ViT conversion, and the
    DyT modules a plain ViT checkpoint lacks keep their initialisation."""
    state = _vit_checkpoint_filter_fn(state_dict, model)
    for key, value in model.state_dict().items():
        if key not in state and _is_dyt_key(key):
            state[key] = value
    return state


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),  # the paper normalises with mean = std = 0.5
        "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        # the paper's backbones: the original Google IN-21K ViTs (no classifier head)
        "dyt_vit_base_patch16_224.orig_in21k": _cfg(
            hf_hub_id="timm/vit_base_patch16_224.orig_in21k", num_classes=0
        ),
        "dyt_vit_large_patch16_224.orig_in21k": _cfg(
            hf_hub_id="timm/vit_large_patch16_224.orig_in21k", num_classes=0
        ),
        "dyt_vit_test.untrained": _cfg(input_size=(3, 32, 32), num_classes=10),
    }
)


def _build_dyt_vit(
    dyt_config: DyTConfig | None = None,
    bottleneck: int | None = None,
    rate: float | None = None,
    adapter_scale: float | str | None = None,
    adapter_dropout: float | None = None,
    adapter_layernorm: str | None = None,
    tau: float | None = None,
    num_experts: int | None = None,
    dispatch: str | None = None,
    sparse_inference: bool | None = None,
    **vit_kwargs: Any,
) -> VisionTransformer:
    """A timm ``VisionTransformer`` from ``vit_kwargs``, converted with the DyT fields given."""
    given = dict(
        bottleneck=bottleneck, rate=rate, adapter_scale=adapter_scale,
        adapter_dropout=adapter_dropout, adapter_layernorm=adapter_layernorm, tau=tau,
        num_experts=num_experts, dispatch=dispatch, sparse_inference=sparse_inference,
    )  # fmt: skip
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    return convert_vit(VisionTransformer(**vit_kwargs), dyt_config, **overrides)


def _create_dyt_vit(variant: str, pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    return build_model_with_cfg(
        _build_dyt_vit,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=3, feature_cls="getter"),
        **kwargs,
    )


@register_model
def dyt_vit_test(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Tiny DyT ViT for tests: img 32, patch 8, width 32, depth 3, 2 heads (caller wins)."""
    model_args = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2)
    return _create_dyt_vit("dyt_vit_test", pretrained, **{**model_args, **kwargs})


@register_model
def dyt_vit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DyT ViT-B/16 (the paper's main backbone); ``pretrained=True`` loads timm's IN-21K backbone."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)
    return _create_dyt_vit("dyt_vit_base_patch16_224", pretrained, **{**model_args, **kwargs})


@register_model
def dyt_vit_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DyT ViT-L/16 (the paper's large backbone); ``pretrained=True`` loads timm's IN-21K backbone."""
    model_args = dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16)
    return _create_dyt_vit("dyt_vit_large_patch16_224", pretrained, **{**model_args, **kwargs})
