"""``skvg info``: parameter counts of TransVG / KeViLI variants beside the reference figures.

The variants use BERT-base (bert-base-uncased's configuration, built locally) and a ResNet with
frozen batch norm (whose affine terms are buffers, as in DETR); counts are exact and computed on the
meta device (no memory, no download). GFLOPs count one multiply-add as one FLOP.
"""

from __future__ import annotations

from typing import Any

from papers_shared.methods import Table

__all__ = ["info", "REFERENCE_PARAMS", "variant_config"]

#: Reference counts (TransVG measured; KeViLI computed for L_q = 20, L_k = 128, one shared BERT).
REFERENCE_PARAMS = {
    "TransVG-R50 (KeViLI, ke_layers=0)": 149_745_860,
    "TransVG-R101": 168_685_764,
    "KeViLI-R50 joint, 6 KE layers": 157_968_324,
    "KeViLI-R50 cross, 1 KE layer": 151_257_796,
}


def variant_config(name: str) -> Any:
    from skvg.config import KeViLIConfig

    base: dict[str, Any] = {"max_query_len": 20, "max_knowledge_len": 128}
    return {
        "TransVG-R50 (KeViLI, ke_layers=0)": KeViLIConfig(backbone="resnet50", ke_layers=0, **base),
        "TransVG-R101": KeViLIConfig(backbone="resnet101", ke_layers=0, **base),
        "KeViLI-R50 joint, 6 KE layers": KeViLIConfig(backbone="resnet50", ke_layers=6, **base),
        "KeViLI-R50 cross, 1 KE layer": KeViLIConfig(
            backbone="resnet50", ke_layers=1, knowledge_fusion="cross", **base
        ),
    }[name]


def count_variant(name: str) -> int:
    import torch
    from transformers import BertConfig

    from papers_shared.counting import count_parameters
    from skvg.models.kevili import KeViLI
    from skvg.models.text import TextEncoder

    with torch.device("meta"):
        model = KeViLI(variant_config(name), TextEncoder.from_config(BertConfig()))
    return count_parameters(model).total


def info() -> list[Table]:
    rows = []
    for name, reference in REFERENCE_PARAMS.items():
        ours = count_variant(name)
        rows.append([name, ours, reference, "yes" if ours == reference else "no"])
    return [
        Table(
            ["variant", "params (ours)", "reference", "equal"],
            rows,
            title="skvg: KeViLI / TransVG parameters (BERT-base, ResNet with frozen BN, d = 256)",
            notes=[
                "Reference: TransVG counts measured from its released layout; KeViLI = TransVG + KE encoder "
                "+ ke_pos_embed + know_proj (the paper's method code was not released).",
                "Each 256-d post-norm encoder layer (8 heads, FFN 2048) has 1,315,072 parameters.",
            ],
        )
    ]
