"""Params and FLOPs of the five released configs beside the paper's figures (no weights needed)."""

from __future__ import annotations

import torch

from groupmixformer.config import PUBLISHED, VARIANTS, GroupMixFormerConfig
from papers_shared.counting import FLOP_CONVENTION, count_flops, count_parameters
from papers_shared.methods import Table

__all__ = ["info", "model_flops"]


def model_flops(
    model_or_config: torch.nn.Module | GroupMixFormerConfig, image_size: int | tuple[int, int] = 224
) -> int:
    """FLOPs of one image (``papers_shared.count_flops``: one multiply-add = one FLOP, norms
    counted as fvcore counts them, the convention of the paper's figures).

    Counted on the release's op order: the fused inference path folds BatchNorms and reorders
    convolutions, which a counter would see as different work. A config is counted on the meta
    device, without allocating weights.
    """
    from groupmixformer.models import GroupMixFormer

    if isinstance(model_or_config, GroupMixFormerConfig):
        with torch.device("meta"):
            model: torch.nn.Module = GroupMixFormer.from_config(model_or_config)
    else:
        model = model_or_config
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    param = next(model.parameters())
    in_chans = int(getattr(model, "in_chans", 3))
    x = torch.zeros(1, in_chans, height, width, device=param.device, dtype=param.dtype)
    was_training = model.training
    fused = getattr(model, "use_fused_eval", False)
    model.eval()
    if isinstance(model, GroupMixFormer):
        model.set_fused_eval(False)
    try:
        return count_flops(model, x).total
    finally:
        if isinstance(model, GroupMixFormer):
            model.set_fused_eval(fused)
        model.train(was_training)


def info() -> list[Table]:
    """Exact params and FLOPs at 224 of each released config (meta device, no weights)."""
    from groupmixformer.models import GroupMixFormer

    rows = []
    for name, config in VARIANTS.items():
        with torch.device("meta"):
            params = count_parameters(GroupMixFormer.from_config(config)).trainable
        paper_params, paper_flops, top1 = PUBLISHED[name]
        rows.append(
            [
                f"groupmixformer_{name}",
                f"{params:,}",
                f"{paper_params}M",
                f"{model_flops(config, 224) / 1e9:.3f}G",
                f"{paper_flops}G",
                top1,
            ]
        )
    return [
        Table(
            headers=[
                "timm name",
                "params (ours)",
                "params (paper)",
                "GFLOPs (ours)",
                "GFLOPs (paper)",
                "top-1 % (paper)",
            ],
            rows=rows,
            title="GroupMixFormer variants at 224x224 (ImageNet-1k, 1000 classes)",
            notes=[
                FLOP_CONVENTION,
                "GFLOPs (ours) are counted on the release's op order; the paper's figures "
                "(official README) are these rounded, except for L (below).",
                "L: the released config (dims 240/320/360/480, depths 8/10/30/10, mlp 4/4/2/2) "
                "gives 71.83M / 38.2G, not the published 70.3M / 36.1G. The official config is "
                "marked 'need to adjust', no L weights were released, and no natural config gives "
                "both published numbers, so the released config is kept as is.",
                "Top-1 is the paper's; it cannot be checked here without the weights.",
            ],
        )
    ]
