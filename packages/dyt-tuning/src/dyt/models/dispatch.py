"""What every DyT model shares: the block base class, run modes and the dispatcher record.

A converted model keeps its timm class; only its blocks are replaced by DyT blocks (subclasses of
:class:`DispatchBlock`) that hold the original layers. ``model(x)`` therefore behaves like any
timm model and returns logits. What the DyT objective needs besides the logits, the token
dispatchers' masks and logits, comes from :func:`forward_dyt`, which runs the same forward while
the blocks record their decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dyt.config import DyTConfig

__all__ = [
    "DispatchBlock",
    "dispatch_blocks",
    "dispatch_mode",
    "forward_dyt",
    "get_dyt_config",
    "is_dyt_model",
    "set_sparse_inference",
    "trainable_state_dict",
]

Record = tuple[torch.Tensor, torch.Tensor]


class DispatchBlock(nn.Module):
    """Base of every DyT block: two run-mode switches and the record of its decisions.

    ``complete``: every token goes through the dispatched part (the paper's "complete model");
    ``sparse_inference``: in eval, gather the active tokens and run the dispatched
    part on them only (real skipping). Both are set by :func:`dispatch_mode`.
    """

    def __init__(self, sparse_inference: bool = True) -> None:
        super().__init__()
        self.complete = False
        self.sparse_inference = sparse_inference
        self._records: list[Record] | None = None

    @torch.jit.unused
    def _record(self, mask: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep (mask (B, N, 1), logits (B, N, 1)) while :func:`dispatch_mode` records."""
        if self._records is not None:
            self._records.append((mask, logits))


def dispatch_blocks(model: nn.Module) -> list[DispatchBlock]:
    """The DyT blocks of ``model`` in module order (empty for a model that is not DyT)."""
    return [module for module in model.modules() if isinstance(module, DispatchBlock)]


def is_dyt_model(model: nn.Module) -> bool:
    return bool(dispatch_blocks(model))


def get_dyt_config(model: nn.Module) -> DyTConfig:
    """The :class:`DyTConfig` a model was converted with; ``TypeError`` for other models."""
    config = getattr(model, "dyt_config", None)
    if not isinstance(config, DyTConfig):
        raise TypeError(
            f"{type(model).__name__} is not a DyT model (convert it with dyt.convert_vit or "
            "dyt.convert_swin)"
        )
    return config


def set_sparse_inference(model: nn.Module, enabled: bool) -> None:
    """Choose the eval path of every block: packed gather/scatter (True) or dense masked (False)."""
    from dataclasses import replace

    get_dyt_config(model)  # raises for a model that is not DyT
    for block in dispatch_blocks(model):
        block.sparse_inference = enabled
    for module in model.modules():  # the converted model (and a video model's backbone)
        config = module.__dict__.get("dyt_config")
        if isinstance(config, DyTConfig):
            vars(module)["dyt_config"] = replace(config, sparse_inference=enabled)


@contextmanager
def dispatch_mode(
    model: nn.Module, *, complete: bool = False, sparse: bool | None = None
) -> Iterator[list[Record]]:
    """Run ``model`` in a DyT mode and record the dispatchers' decisions.

    Yields the list that every dispatcher appends ``(mask (B, N, 1), logits (B, N, 1))`` to, in
    execution order, during forwards inside the ``with`` block. ``sparse=None`` keeps each
    block's own setting. The blocks' previous modes are restored on exit.
    """
    blocks = dispatch_blocks(model)
    if not blocks:
        raise TypeError(f"{type(model).__name__} has no DyT blocks (see dyt.convert_vit)")
    records: list[Record] = []
    saved = [(b.complete, b.sparse_inference, b._records) for b in blocks]
    try:
        for block in blocks:
            block.complete = complete
            if sparse is not None:
                block.sparse_inference = sparse
            block._records = records
        yield records
    finally:
        for block, (was_complete, was_sparse, was_records) in zip(blocks, saved):
            block.complete, block.sparse_inference, block._records = (
                was_complete,
                was_sparse,
                was_records,
            )


def records_to_aux(records: list[Record]) -> dict[str, torch.Tensor]:
    """Stack recorded decisions into the aux dict of :func:`forward_dyt`."""
    if not records:
        raise RuntimeError("no token dispatcher ran during the forward")
    masks = [mask for mask, _ in records]
    logits = [logit for _, logit in records]
    if len({m.shape[1] for m in masks}) == 1:  # ViT: one token count for every dispatcher
        token_select, token_logits = torch.stack(masks, 1), torch.stack(logits, 1)
    else:  # Swin: stages differ in token count; all decisions side by side
        token_select = torch.cat(masks, 1).unsqueeze(1)
        token_logits = torch.cat(logits, 1).unsqueeze(1)
    active = torch.stack([m.detach().sum(dim=(1, 2)) for m in masks], dim=1)
    return {
        "token_select": token_select,
        "token_logits": token_logits,
        "active_per_block": active,
    }


def forward_dyt(
    model: nn.Module, x: torch.Tensor, *, complete: bool = False, sparse: bool | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``model(x)`` plus what the DyT objective and FLOP counting need.

    Returns ``(output, aux)``: ``aux["token_select"]`` (B, L', N, 1) dispatcher masks without
    prefix tokens (L' = dispatchers; Swin: (B, 1, sum of tokens, 1)), ``aux["token_logits"]``
    of the same shape, ``aux["active_per_block"]`` (B, L') active tokens per dispatcher.
    ``complete=True`` runs every token through every dispatched part (the dispatchers still
    run; their masks are returned but not applied). Training masks carry the straight-through
    gradient.
    """
    if model.training and getattr(model, "grad_checkpointing", False):
        raise ValueError(
            "forward_dyt needs the dispatcher masks with their gradients; turn gradient "
            "checkpointing off (model.set_grad_checkpointing(False)) for DyT training"
        )
    with dispatch_mode(model, complete=complete, sparse=sparse) as records:
        output = model(x)
    return output, records_to_aux(records)


def trainable_state_dict(model: nn.Module) -> dict[str, Any]:
    """Only the tensors DyT trains (adapters, dispatchers, head, plus task modules)."""
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}
