"""DyT on timm Vision Transformers: blocks with token dispatch, the model, ``convert_vit``.

A converted model keeps timm's module tree (``blocks.{i}.norm1`` ...) and adds, per block, the
official names ``adaptmlp.{down_proj,up_proj}`` and ``mlp_token_select.mlp_head``, so checkpoints
written by the official code load strictly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from dyt.config import DyTConfig
from dyt.models.layers import Adapter, MoEAdapter, TokenDispatcher

__all__ = [
    "DyTBlock",
    "AttnDispatchBlock",
    "AttnMLPDispatchBlock",
    "LayerDispatchBlock",
    "DyTVisionTransformer",
    "convert_vit",
    "is_dyt_model",
    "trainable_state_dict",
    "TIMM_BLOCK_PARTS",
    "add_on_active_rows",
]

logger = logging.getLogger(__name__)

TIMM_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
BlockOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _make_adapter(config: DyTConfig, embed_dim: int) -> nn.Module:
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


def add_on_active_rows(
    x: torch.Tensor, mask: torch.Tensor, update_fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """x + update_fn(active rows), inactive rows untouched: the packed (real-skipping) MLP.

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


class _DispatchBlockBase(nn.Module):
    """Holds the frozen timm block's parts under their timm names."""

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__()
        missing = [name for name in TIMM_BLOCK_PARTS if not hasattr(block, name)]
        if missing:
            raise TypeError(
                f"DyT needs timm pre-norm Blocks with {TIMM_BLOCK_PARTS}; "
                f"{type(block).__name__} lacks {missing}"
            )
        for name in TIMM_BLOCK_PARTS:
            setattr(self, name, getattr(block, name))
        self.embed_dim = int(block.norm1.weight.shape[0])
        self.num_prefix_tokens = num_prefix_tokens
        self.config = config

    def _attention(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention branch ``drop_path1(ls1(attn(norm1(x))))``.

        key_mask: (B, T) bool (True = may be attended to) or None; attn_bias: additive
        (1 or B, heads, T, T) bias (e.g. relative position) or None.
        """
        attn_mask = attn_bias
        if key_mask is not None:
            # A sample with no active token at all (possible without prefix tokens) would give
            # NaN rows; its attention output is discarded (x 0), so let it attend to everything.
            key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
            attn_mask = key_mask[:, None, None, :]  # (B, 1, 1, T)
            if attn_bias is not None:
                attn_mask = attn_bias.masked_fill(~attn_mask, float("-inf"))
        if attn_mask is None:
            return self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def _dispatch(self, dispatcher: TokenDispatcher, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run a TD on the patch tokens of x: (B, T, C) -> patch mask, logits (B, N, 1)."""
        return dispatcher(x[:, self.num_prefix_tokens :])

    def _sparse_mlp(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x + MLP on active rows only. x: (B, T, C), mask: (B, T, 1) in {0, 1}."""
        return add_on_active_rows(x, mask, lambda rows: self.ls2(self.mlp(self.norm2(rows))))

    def _sparse_per_sample(
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

    def _dispatched_attention(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        adapter_out: torch.Tensor,
        complete: bool,
        sparse: bool,
    ) -> torch.Tensor:
        """Residual + attention on the active tokens only + adapter (attention dispatch).

        mask: (B, N, 1) patch mask. Dense path: key masking, inactive rows multiplied by 0.
        Sparse path (eval): per-sample packed attention over the active tokens.
        """
        if complete:
            return x + self._attention(x) + adapter_out
        full = _with_prefix(mask, self.num_prefix_tokens)
        if sparse and not self.training:
            return self._sparse_per_sample(x, full, self._attention) + adapter_out
        return x + full * self._attention(x, key_mask=full.squeeze(-1) > 0.5) + adapter_out


class DyTBlock(_DispatchBlockBase):
    """MLP dispatch (the paper's default, Eq. 5)::

        x = x + drop_path1(ls1(attn(norm1(x))))          # all tokens
        m = TD(x)                                         # prefix tokens forced to 1
        out = x + m * drop_path2(ls2(mlp(norm2(x)))) + adapter(x)

    TD and adapter read the raw residual stream (no LayerNorm). With ``sparse=True`` (eval only)
    the active rows of the whole batch are gathered, pushed through the MLP and scattered back.
    """

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptmlp = _make_adapter(config, self.embed_dim)
        self.mlp_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    def forward(
        self,
        x: torch.Tensor,
        complete: bool = False,
        sparse: bool = False,
        attn_bias: torch.Tensor | None = None,
    ) -> BlockOutput:
        """x: (B, T, C) -> (x (B, T, C), patch mask (B, 1, N, 1), patch logits (B, 1, N, 1)).

        attn_bias: optional additive attention bias (1 or B, heads, T, T).
        """
        x = x + self._attention(x, attn_bias=attn_bias)
        mask, logits = self._dispatch(self.mlp_token_select, x)
        adapter_out = self.adaptmlp(x)
        if complete:
            x = x + self._mlp(x) + adapter_out
        elif sparse and not self.training:
            x = self._sparse_mlp(x, _with_prefix(mask, self.num_prefix_tokens)) + adapter_out
        else:
            x = x + _with_prefix(mask, self.num_prefix_tokens) * self._mlp(x) + adapter_out
        return x, mask.unsqueeze(1), logits.unsqueeze(1)


class AttnDispatchBlock(_DispatchBlockBase):
    """Attention dispatch (paper section 3.3, experimental, no reference code).

    The TD sits before attention; only active tokens are updated by attention, and they attend
    only to active tokens (key masking on the dense path, in training and inference alike); the
    adapter is parallel to attention; the MLP is dense. With ``sparse=True`` (eval only) each
    sample's active tokens are packed and attend among themselves (same function, real skipping).
    """

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptattn = _make_adapter(config, self.embed_dim)
        self.attn_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    def forward(self, x: torch.Tensor, complete: bool = False, sparse: bool = False) -> BlockOutput:
        mask, logits = self._dispatch(self.attn_token_select, x)
        x = self._dispatched_attention(x, mask, self.adaptattn(x), complete, sparse)
        x = x + self._mlp(x)
        return x, mask.unsqueeze(1), logits.unsqueeze(1)


class AttnMLPDispatchBlock(_DispatchBlockBase):
    """Attention-MLP dispatch: two TDs and two adapters per block (experimental)."""

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptattn = _make_adapter(config, self.embed_dim)
        self.attn_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)
        self.adaptmlp = _make_adapter(config, self.embed_dim)
        self.mlp_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    def forward(self, x: torch.Tensor, complete: bool = False, sparse: bool = False) -> BlockOutput:
        attn_mask, attn_logits = self._dispatch(self.attn_token_select, x)
        x = self._dispatched_attention(x, attn_mask, self.adaptattn(x), complete, sparse)
        mlp_mask, mlp_logits = self._dispatch(self.mlp_token_select, x)
        adapter_out = self.adaptmlp(x)
        if complete:
            x = x + self._mlp(x) + adapter_out
        elif sparse and not self.training:
            x = self._sparse_mlp(x, _with_prefix(mlp_mask, self.num_prefix_tokens)) + adapter_out
        else:
            x = x + _with_prefix(mlp_mask, self.num_prefix_tokens) * self._mlp(x) + adapter_out
        return (
            x,
            torch.stack([attn_mask, mlp_mask], dim=1),
            torch.stack([attn_logits, mlp_logits], dim=1),
        )


class LayerDispatchBlock(_DispatchBlockBase):
    """Layer dispatch: one TD and one adapter parallel to the whole layer (experimental).

    Inactive tokens skip attention and MLP (they are not attended to either); with
    ``sparse=True`` (eval only) each sample's active tokens run the whole layer packed.
    """

    def __init__(self, block: nn.Module, config: DyTConfig, num_prefix_tokens: int) -> None:
        super().__init__(block, config, num_prefix_tokens)
        self.adaptlayer = _make_adapter(config, self.embed_dim)
        self.layer_token_select = TokenDispatcher(self.embed_dim, tau=config.tau)

    def forward(self, x: torch.Tensor, complete: bool = False, sparse: bool = False) -> BlockOutput:
        mask, logits = self._dispatch(self.layer_token_select, x)
        adapter_out = self.adaptlayer(x)
        if complete:
            h = x + self._attention(x)
            h = h + self._mlp(h)
        elif sparse and not self.training:
            full = _with_prefix(mask, self.num_prefix_tokens)
            h = self._sparse_per_sample(x, full, self._layer_update)
        else:
            full = _with_prefix(mask, self.num_prefix_tokens)
            h = x + self._attention(x, key_mask=full.squeeze(-1) > 0.5)
            h = h + self._mlp(h)
            h = x + full * (h - x)
        return h + adapter_out, mask.unsqueeze(1), logits.unsqueeze(1)

    def _layer_update(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the frozen layer adds to the tokens it processes: (1, a, C) -> (1, a, C)."""
        attended = self._attention(tokens)
        return attended + self._mlp(tokens + attended)


BLOCK_TYPES: dict[str, type[_DispatchBlockBase]] = {
    "mlp": DyTBlock,
    "attn": AttnDispatchBlock,
    "attn_mlp": AttnMLPDispatchBlock,
    "layer": LayerDispatchBlock,
}


class DyTVisionTransformer(VisionTransformer):
    """A timm ``VisionTransformer`` whose blocks dispatch tokens. Built by :func:`convert_vit`.

    ``forward(x, complete=False, sparse=None) -> (logits (B, K), aux)`` with
    ``aux["token_select"]``: (B, L', N, 1) masks without prefix tokens and
    ``aux["token_logits"]``: (B, L', N, 1) TD logits (L' = L, or 2L for attention-MLP dispatch).
    All timm methods that do not run blocks (``forward_head``, ``reset_classifier``, ...) still work.
    """

    dyt_config: DyTConfig

    def _use_sparse(self, sparse: bool | None) -> bool:
        if self.training:
            return False
        return self.dyt_config.sparse_inference if sparse is None else sparse

    def forward_dyt_features(
        self,
        x: torch.Tensor,
        complete: bool = False,
        sparse: bool | None = None,
        return_indices: tuple[int, ...] = (),
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor]]:
        """x: (B, 3, H, W) -> (normed tokens (B, T, C), aux, block outputs at ``return_indices``)."""
        use_sparse = self._use_sparse(sparse)
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        masks, logits, intermediates = [], [], []
        for index, block in enumerate(self.blocks):
            x, mask, logit = block(x, complete=complete, sparse=use_sparse)
            masks.append(mask)
            logits.append(logit)
            if index in return_indices:
                intermediates.append(x)
        aux = {"token_select": torch.cat(masks, dim=1), "token_logits": torch.cat(logits, dim=1)}
        return self.norm(x), aux, intermediates

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, complete: bool = False, sparse: bool | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, 3, H, W) -> (logits (B, K), aux). ``complete=True`` ignores every mask."""
        if x.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        tokens, aux, _ = self.forward_dyt_features(x, complete=complete, sparse=sparse)
        return self.forward_head(tokens), aux

    def forward_features(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """timm's contract: normed tokens (B, T, C) of the dispatched model."""
        return self.forward_dyt_features(x)[0]

    def forward_intermediates(  # type: ignore[override]
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        complete: bool = False,
        sparse: bool | None = None,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's dense-task contract on the dispatched model.

        Block outputs at ``indices`` (last n blocks for an int), as (B, C, H, W) patch maps
        ("NCHW") or (B, T, C) tokens ("NLC"); optionally also the final normed tokens.
        """
        from timm.models._features import feature_take_indices

        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take, _ = feature_take_indices(len(self.blocks), indices)
        tokens, _, outputs = self.forward_dyt_features(
            x, complete=complete, sparse=sparse, return_indices=tuple(take)
        )
        if norm:
            outputs = [self.norm(o) for o in outputs]
        if output_fmt == "NCHW":
            height, width = (
                x.shape[-2] // self.patch_embed.patch_size[0],
                x.shape[-1] // self.patch_embed.patch_size[1],
            )
            outputs = [
                o[:, self.num_prefix_tokens :]
                .transpose(1, 2)
                .reshape(o.shape[0], -1, height, width)
                for o in outputs
            ]
        return outputs if intermediates_only else (tokens, outputs)

    def set_sparse_inference(self, enabled: bool) -> None:
        """Choose the eval path: packed gather/scatter (True) or dense masked MLP (False)."""
        self.dyt_config = replace(self.dyt_config, sparse_inference=enabled)


@functools.cache
def _dyt_class(base: type[VisionTransformer]) -> type[VisionTransformer]:
    if issubclass(base, DyTVisionTransformer):
        return base
    if base is VisionTransformer:
        return DyTVisionTransformer
    return type(f"DyT{base.__name__}", (DyTVisionTransformer, base), {})


def is_dyt_model(model: nn.Module) -> bool:
    return isinstance(model, DyTVisionTransformer)


def convert_vit(
    model: nn.Module,
    config: DyTConfig | None = None,
    *,
    num_classes: int | None = None,
    head_init_std: float = 0.01,
    **overrides: Any,
) -> DyTVisionTransformer:
    """Turn a timm ``VisionTransformer`` into a DyT model, in place, and return it.

    The backbone is frozen; adapters, token dispatchers and the classifier head are trainable.
    ``overrides`` are :class:`DyTConfig` fields (``bottleneck=8, rate=0.5, adapter_scale=1.0``).
    ``num_classes`` replaces the head (trunc-normal std ``head_init_std``, bias 0).
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
    device = next(model.parameters()).device
    new_blocks = [block_type(block, config, prefix) for block in model.blocks]
    model.blocks = nn.Sequential(*new_blocks).to(device)
    if num_classes is not None:
        model.reset_classifier(num_classes)
        if isinstance(model.head, nn.Linear):
            nn.init.trunc_normal_(model.head.weight, std=head_init_std)
            nn.init.zeros_(model.head.bias)
        model.head.to(device)
    for param in model.head.parameters():
        param.requires_grad_(True)
    model.__class__ = _dyt_class(type(model))
    model.dyt_config = config
    return model  # type: ignore[return-value]


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the tensors DyT trains (adapters, dispatchers, head, plus task modules)."""
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


# --- timm registration -------------------------------------------------------------------------


def _create_dyt_vit(variant: str, pretrained: bool, dyt_config: DyTConfig | None, **kwargs: Any):
    import timm

    dyt_fields = {k: kwargs.pop(k) for k in list(kwargs) if k in DyTConfig.__dataclass_fields__}
    base = timm.create_model(variant, pretrained=pretrained, **kwargs)
    return convert_vit(base, dyt_config, **dyt_fields)


@register_model
def dyt_vit_test(
    pretrained: bool = False, dyt_config: DyTConfig | None = None, **kwargs: Any
) -> DyTVisionTransformer:
    """Tiny DyT ViT for tests: img 32, patch 8, width 32, depth 2, 2 heads (caller wins)."""
    model_args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    return _create_dyt_vit("vit_base_patch16_224", False, dyt_config, **{**model_args, **kwargs})


@register_model
def dyt_vit_base_patch16_224(
    pretrained: bool = False, dyt_config: DyTConfig | None = None, **kwargs: Any
) -> DyTVisionTransformer:
    """DyT ViT-B/16 (load the IN-21K backbone with ``pretrained=True`` where the hub is reachable)."""
    return _create_dyt_vit("vit_base_patch16_224", pretrained, dyt_config, **kwargs)


@register_model
def dyt_vit_large_patch16_224(
    pretrained: bool = False, dyt_config: DyTConfig | None = None, **kwargs: Any
) -> DyTVisionTransformer:
    """DyT ViT-L/16."""
    return _create_dyt_vit("vit_large_patch16_224", pretrained, dyt_config, **kwargs)
