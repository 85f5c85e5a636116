"""Parameter and FLOP counting in the one convention every package reports.

The convention (fvcore's, which most vision papers' tables use):

* one multiply-add is one FLOP (torch's ``FlopCounterMode`` counts it as two; its totals are
  halved here);
* matrix multiplications, linear layers, convolutions (bias not counted) and attention kernels
  (QK^T and AV, including the fused CPU kernel) count their multiply-adds;
* normalisation layers count per input element, once per layer call: LayerNorm, GroupNorm,
  InstanceNorm and BatchNorm in training 5 with an affine transform (4 without); BatchNorm in
  eval 2 (1 without);
* upsampling counts one per output element, adaptive average pooling one per input element (a
  1x1 adaptive pool reaches torch as a mean and counts zero);
* activations, softmax, residual additions and other element-wise ops count zero.

Packages print :data:`FLOP_CONVENTION` in the header of their ``info`` tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FLOP_CONVENTION", "ParamCount", "FlopCount", "count_parameters", "count_flops"]

FLOP_CONVENTION = (
    "GFLOPs: one multiply-add = one FLOP (fvcore's convention, as the papers count); "
    "matmuls, convolutions and attention counted, normalisation layers counted once per call, "
    "activations and element-wise ops not counted"
)
"""One line for the header of every ``info`` table that prints FLOPs."""


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


@dataclass(frozen=True)
class FlopCount:
    """Multiply-adds (``total``) and the same split by torch operator and by module."""

    total: int
    by_operator: Mapping[str, int]
    by_module: Mapping[str, int]

    @property
    def gflops(self) -> float:
        return self.total / 1e9


def _cpu_flash_attention_flops(
    query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    """torch's counter knows the CUDA attention kernels but not the CPU one; same formula."""
    batch, heads, q_len, head_dim = query_shape
    kv_len, value_dim = key_shape[2], value_shape[3]
    return 2 * batch * heads * q_len * kv_len * (head_dim + value_dim)


def _native_mha_flops(query_shape, key_shape, value_shape, embed_dim, *args, **kwargs) -> int:
    """nn.MultiheadAttention's fused inference kernel (eval, no grad): input projections, the two
    attention products and the output projection, as the unfused path counts them."""
    batch, q_len, e = query_shape
    kv_len = key_shape[1]
    projections = batch * q_len * e * embed_dim + 2 * batch * kv_len * e * embed_dim
    attention = 2 * batch * q_len * kv_len * embed_dim
    output = batch * q_len * embed_dim * embed_dim
    return 2 * (projections + attention + output)


def _numel(shape: Any) -> int:
    return math.prod(shape) if shape is not None else 0


# every formula returns twice the fvcore count: count_flops halves all totals at the end
def _layer_norm_flops(input_shape, normalized_shape, weight_shape=None, *args, **kwargs) -> int:
    return 2 * _numel(input_shape) * (5 if weight_shape is not None else 4)


def _group_norm_flops(input_shape, weight_shape=None, *args, **kwargs) -> int:
    return 2 * _numel(input_shape) * (5 if weight_shape is not None else 4)


def _batch_norm_flops(input_shape, weight_shape=None, bias_shape=None, running_mean=None,
                      running_var=None, training=False, *args, **kwargs) -> int:  # fmt: skip
    affine = weight_shape is not None
    if training:
        return 2 * _numel(input_shape) * (5 if affine else 4)
    return 2 * _numel(input_shape) * (2 if affine else 1)


def _batch_norm_eval_flops(input_shape, weight_shape=None, *args, **kwargs) -> int:
    return 2 * _numel(input_shape) * (2 if weight_shape is not None else 1)


def _per_output_element(*args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(out_shape)


def _per_input_element(input_shape, *args, **kwargs) -> int:
    return 2 * _numel(input_shape)


def _extra_flop_formulas() -> dict:
    # FlopCounterMode looks formulas up by overload packet and wraps them to receive shapes
    formulas: dict[str, Callable[..., int]] = {
        "_scaled_dot_product_flash_attention_for_cpu": _cpu_flash_attention_flops,
        "_native_multi_head_attention": _native_mha_flops,
        "native_layer_norm": _layer_norm_flops,
        "native_group_norm": _group_norm_flops,
        "native_batch_norm": _batch_norm_flops,
        "cudnn_batch_norm": _batch_norm_flops,
        "_native_batch_norm_legit": _batch_norm_flops,
        "_native_batch_norm_legit_no_training": _batch_norm_eval_flops,
        "upsample_nearest2d": _per_output_element,
        "upsample_bilinear2d": _per_output_element,
        "upsample_bicubic2d": _per_output_element,
        "_adaptive_avg_pool2d": _per_input_element,
    }
    out: dict[Any, Callable[..., int]] = {}
    for name, formula in formulas.items():
        packet = getattr(torch.ops.aten, name, None)
        if packet is None:
            continue
        out[packet] = formula
        # torch decomposes an op whose overload it has no formula for (upsampling would turn
        # into indexing and count zero): list the overloads too
        for overload in packet.overloads():
            out[getattr(packet, overload)] = formula
    return out


def count_parameters(model: nn.Module) -> ParamCount:
    """Count parameters once each (shared tensors are not double counted); works on meta models."""
    seen: set[int] = set()
    total = trainable = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return ParamCount(total=total, trainable=trainable)


def count_flops(
    fn: nn.Module | Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> FlopCount:
    """Run ``fn(*args, **kwargs)`` under ``FlopCounterMode`` with no grad and count multiply-adds.

    The convention is the module's (fvcore's): see the module docstring and
    :data:`FLOP_CONVENTION`. ``by_operator`` and ``by_module`` split the same total.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    by_operator = {
        str(op): int(n) // 2 for op, n in counter.get_flop_counts().get("Global", {}).items()
    }
    by_module = {
        name: sum(int(n) for n in ops.values()) // 2
        for name, ops in counter.get_flop_counts().items()
        if name != "Global"
    }
    return FlopCount(
        total=counter.get_total_flops() // 2, by_operator=by_operator, by_module=by_module
    )
