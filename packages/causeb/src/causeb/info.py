"""``causeb info``: parameters and GFLOPs per variant beside the official classes'."""

from __future__ import annotations

import torch

from causeb.algorithm import CauseEB
from papers_shared.counting import FLOP_CONVENTION, count_flops, count_parameters
from papers_shared.methods import Table

__all__ = ["info", "REFERENCE"]

MATMUL_OPS = ("aten.convolution", "aten.addmm", "aten.mm")

# Figures measured from the official classes (K=7, M=3, mlp 256 x 3); "gflops": the
# multiply-adds of predict's convolutions and linear layers (one multiply-add = one FLOP).
REFERENCE = {
    "ResNet-18": {"total": 24_501_834, "optimised": 22_397_002, "gflops": 1.814},
    "ResNet-50": {"total": 59_997_514, "optimised": 47_396_170, "gflops": 4.087},
}


def info() -> list[Table]:
    """One row per backbone, built on the meta device (no weights, no download)."""
    rows = []
    for name, use_resnet18 in (("ResNet-18", True), ("ResNet-50", False)):
        with torch.device("meta"):
            algorithm = CauseEB(
                (3, 224, 224), 7, 3, {"resnet18": use_resnet18, "resnet_pretrained": False}
            ).eval()
            flops = count_flops(algorithm.predict, torch.empty(1, 3, 224, 224))
        conv_linear = sum(v for k, v in flops.by_operator.items() if k in MATMUL_OPS)
        total = count_parameters(algorithm).total
        optimised = sum(p.numel() for g in algorithm.optimizer.param_groups for p in g["params"])
        deployed = sum(
            count_parameters(m).total
            for m in (algorithm.base, algorithm.featurizer_class, algorithm.classifier_class)
        )
        ref = REFERENCE[name]
        rows.append(
            [
                name,
                f"{total:,} ({ref['total']:,})",
                f"{optimised:,} ({ref['optimised']:,})",
                f"{deployed:,}",
                f"{flops.gflops:.3f}",
                f"{conv_linear / 1e9:.3f} ({ref['gflops']:.3f})",
            ]
        )
    return [
        Table(
            [
                "variant (split after layer1)",
                "params incl. projector (ref)",
                "optimised params (ref)",
                "deployed params",
                "predict GFLOPs",
                "conv + linear (ref)",
            ],
            rows,
            title="CausEB, PACS-like head (K=7 classes, M=3 training domains, domain MLP 256 x 3)",
            notes=[
                FLOP_CONVENTION + "; one 3x224x224 image.",
                "ref = measured from the official classes. The deployed model (stem + causal "
                "trunk + head) has exactly a plain ResNet's FLOPs.",
            ],
        )
    ]
