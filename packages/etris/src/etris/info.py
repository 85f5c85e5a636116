"""Parameter and FLOP tables of the three ETRIS variants, beside the paper's figures.

Counts come from constructing the models on the meta device (no weights needed); FLOPs count one
multiply-add as one FLOP (papers_shared.counting), batch 1, 416 x 416, L = 17, whole model.
"""

from __future__ import annotations

from typing import Any

import torch

from papers_shared.methods import Table

__all__ = ["PAPER", "variant_counts", "info"]

# the paper's "Param." column (Bridger parameters, RefCOCO table) and its stated share range
PAPER: dict[str, dict[str, Any]] = {
    "etris_rn50": {"bridger": "1.68M", "refcoco_val_miou": 70.39},
    "etris_rn101": {"bridger": "1.94M", "refcoco_val_miou": 71.06},
    "etris_vit_b16": {"bridger": "1.39M", "refcoco_val_miou": 70.51},
}
PAPER_SHARE = "1.61%-3.38%"
VARIANTS = ("etris_rn50", "etris_rn101", "etris_vit_b16")


def variant_counts(name: str, with_flops: bool = True) -> dict[str, Any]:
    """Exact parameter counts (and FLOPs) of a registered variant, built on the meta device."""
    from etris.models.etris import create_etris
    from papers_shared.counting import count_flops

    with torch.device("meta"):
        model = create_etris(name).eval()
        counts: dict[str, Any] = model.parameter_counts()
        if with_flops:
            size, length = model.config.image_size, model.config.word_len
            flops = count_flops(
                model, torch.empty(1, 3, size, size), torch.ones(1, length, dtype=torch.long)
            )
            counts["gflops"] = flops.gflops
    return counts


def info(with_flops: bool = True, variants: tuple[str, ...] = VARIANTS) -> list[Table]:
    """Two tables: trainable parameters per part, and the two readings of the paper's share."""
    counts = {name: variant_counts(name, with_flops) for name in variants}
    params = Table(
        headers=[
            "variant",
            "Bridger",
            "paper Param.",
            "neck",
            "decoder",
            "projector",
            "positional emb.",
            "total trainable",
            "frozen backbone",
            "GFLOPs @416" if with_flops else "GFLOPs",
        ],
        rows=[
            [
                name,
                c["bridger"],
                PAPER.get(name, {}).get("bridger", "-"),
                c["neck"],
                c["decoder"],
                c["proj"],
                c["backbone_trainable"],
                c["trainable"],
                c["backbone_frozen"],
                f"{c['gflops']:.4g}" if with_flops else "-",
            ]
            for name, c in counts.items()
        ],
        title="ETRIS trainable parameters (exact counts of this implementation)",
        notes=[
            "Frozen backbone includes the dense attention pool's frozen `connect` shortcut. "
            "GFLOPs: one multiply-add = one FLOP, batch 1, sentence length 17.",
            "The paper's Param. column matches the released code for RN101 only; RN50 and "
            "ViT-B/16 Bridgers built as in the code have the counts in the Bridger column.",
        ],
    )
    share = Table(
        headers=[
            "variant",
            "Bridger / image tower",
            "Bridger / whole CLIP backbone",
            "paper's Param. / image tower",
            "paper (Abstract)",
        ],
        rows=[
            [
                name,
                f"{100 * c['bridger'] / c['image_tower']:.2f}%",
                f"{100 * c['bridger'] / c['backbone']:.2f}%",
                _paper_share(name, c["image_tower"]),
                PAPER_SHARE,
            ]
            for name, c in counts.items()
        ],
        title="Share of backbone parameters the Bridger adds: two readings of the paper's range",
        notes=[
            "Image tower includes `connect` for ResNets; the whole backbone is both CLIP towers. "
            "The paper's 1.61% and 3.38% are matched by its Param. column over the image tower "
            "(ViT-B/16 and RN101) and, for 1.61%, also by RN101's Bridger over the whole backbone.",
        ],
    )
    return [params, share]


def _paper_share(name: str, image_tower: int) -> str:
    value = PAPER.get(name, {}).get("bridger")
    if value is None:
        return "-"
    return f"{100 * float(value.rstrip('M')) * 1e6 / image_tower:.2f}%"
