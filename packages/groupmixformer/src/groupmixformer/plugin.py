"""``papers`` plugin: ``info()`` (params/FLOPs per variant beside the paper) and ``demo()``."""

from __future__ import annotations

from groupmixformer.config import EXPECTED, PUBLISHED, VARIANTS
from groupmixformer.counting import model_flops
from groupmixformer.demo import demo
from papers_shared.counting import count_parameters
from papers_shared.methods import Method, Table

__all__ = ["METHOD", "info"]


def info() -> list[Table]:
    """Exact params and FLOPs at 224 of each released config (meta device, no weights)."""
    import torch

    from groupmixformer.models import GroupMixFormer

    rows = []
    for name, config in VARIANTS.items():
        with torch.device("meta"):
            params = count_parameters(GroupMixFormer.from_config(config)).trainable
        flops = model_flops(config, 224)
        paper_params, paper_flops, top1 = PUBLISHED[name]
        rows.append(
            [
                f"groupmixformer_{name}",
                f"{params:,}",
                f"{paper_params}M",
                f"{flops.matmul_conv / 1e9:.3f}G",
                f"{flops.with_norms / 1e9:.3f}G",
                f"{EXPECTED[name][1]:.3f}G",
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
                "FLOPs matmul+conv",
                "FLOPs + norms",
                "FLOPs spec (fvcore)",
                "FLOPs (paper)",
                "top-1 (paper)",
            ],
            rows=rows,
            title="GroupMixFormer variants at 224x224 (ImageNet-1k, 1000 classes)",
            notes=[
                "FLOPs: one multiply-add = one FLOP. 'matmul+conv' is papers_shared.count_flops; "
                "'+ norms' adds fvcore's count for LayerNorm/BatchNorm, the convention of the "
                "published figures.",
                "L: the released config (dims 240/320/360/480, depths 8/10/30/10, mlp 4/4/2/2) "
                "gives 71.83M / 38.2G, not the published 70.3M / 36.1G. The official config is "
                "marked 'need to adjust', no L weights were released, and no natural config gives "
                "both published numbers, so the released config is kept as is.",
                "Top-1 is the paper's; it cannot be checked here without the weights.",
            ],
        )
    ]


METHOD = Method(
    name="groupmixformer",
    title="Advancing Vision Transformers with Group-Mix Attention (GroupMixFormer)",
    info=info,
    demo=demo,
)
