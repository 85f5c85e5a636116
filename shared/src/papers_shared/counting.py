"""Parameter and FLOP counting in the convention vision papers use.

FLOPs here follow fvcore / the papers' tables: one multiply-add is one FLOP. torch's
``FlopCounterMode`` counts a multiply-add as two, so its totals are halved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ParamCount", "FlopCount", "count_parameters", "count_flops"]


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


def _extra_flop_formulas() -> dict:
    # FlopCounterMode looks formulas up by overload packet and wraps them to receive shapes
    packet = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {packet: _cpu_flash_attention_flops} if packet is not None else {}


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

    Only operators torch's counter knows (matmuls, convolutions, attention kernels, including the
    CPU fused attention kernel) are counted, as in fvcore: element-wise ops, norms and
    activations count zero.
    """
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_extra_flop_formulas())
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
