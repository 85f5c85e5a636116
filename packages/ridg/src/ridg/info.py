"""``ridg info``: parameters and GFLOPs beside the official class's, and the bank's memory."""

from __future__ import annotations

import torch

from papers_shared.counting import FLOP_CONVENTION, count_flops, count_parameters
from papers_shared.methods import Table
from ridg.algorithm import RIDG

__all__ = ["info", "REFERENCE_PARAMS", "REFERENCE_GFLOPS"]

# Measured from the official RIDG class (K = 7 classes, one 3x224x224 image): parameters, and
# the multiply-adds of its convolutions and linear layers (in GFLOPs, one multiply-add = one).
REFERENCE_PARAMS = {"ResNet-18": 11_180_103, "ResNet-50": 23_522_375}
REFERENCE_GFLOPS = {"ResNet-18": 1.814, "ResNet-50": 4.087}
MATMUL_OPS = ("aten.convolution", "aten.addmm", "aten.mm")


def _ridg_for(variant: str, num_classes: int) -> RIDG:
    with torch.device("meta"):
        return RIDG(
            (3, 224, 224),
            num_classes,
            3,
            {"resnet18": variant == "ResNet-18", "resnet_pretrained": False},
        )


def info() -> list[Table]:
    """Params and predict GFLOPs (K = 7, 224x224) beside the official class's; bank memory."""
    rows = []
    for variant in ("ResNet-18", "ResNet-50"):
        model = _ridg_for(variant, 7).eval()
        params = count_parameters(model.network).total
        with torch.device("meta"):
            flops = count_flops(model.predict, torch.empty(1, 3, 224, 224))
        conv_linear = sum(v for k, v in flops.by_operator.items() if k in MATMUL_OPS) / 1e9
        rows.append(
            [
                variant,
                model.featurizer.n_outputs,
                f"{params:,} ({REFERENCE_PARAMS[variant]:,})",
                f"{flops.gflops:.3f}",
                f"{conv_linear:.3f} ({REFERENCE_GFLOPS[variant]:.3f})",
            ]
        )
    models = Table(
        ["variant", "D", "params, K=7 (official)", "predict GFLOPs", "conv + linear (official)"],
        rows,
        title="RIDG = ERM network at inference (no extra parameters)",
        notes=[
            FLOP_CONVENTION + "; one 3x224x224 image.",
            "official = measured from the official class. Built on the meta device (no weights, "
            "no download).",
        ],
    )
    bank_rows = []
    for dataset, k in (("PACS", 7), ("OfficeHome", 65), ("DomainNet", 345)):
        for d in (512, 2048):
            floats = k * k * d
            bank_rows.append(
                [dataset, k, d, floats, f"{4 * floats / 2**20:.1f}", f"{2 * floats / 2**20:.1f}"]
            )
    memory = Table(
        ["dataset", "K", "D", "bank floats (K*K*D)", "fp32 MiB", "bf16/fp16 MiB"],
        bank_rows,
        title="Class-mean rationale bank footprint",
        notes=[
            "Set hparams ridg_bank_dtype to bfloat16 (stochastic rounding) or float16 to halve it.",
        ],
    )
    return [models, memory]
