"""Parameters and FLOPs of every module per dataset, beside the figures of the released code."""

from __future__ import annotations

import torch
from torch import nn

from dsp_zsl.models.bases import AttDec, Critic, Encoder, FeatureRefinement, Feedback, Generator
from dsp_zsl.models.dsp import V2SM, VOPE
from papers_shared.counting import count_flops, count_parameters
from papers_shared.methods import Table

__all__ = ["REFERENCE_PARAMS", "info", "module_sizes"]

DATASETS = {"CUB": (312, 150), "SUN": (102, 645), "AWA2": (85, 40)}
# counted on the official TF-VAEGAN / FREE modules and the authors' prototype modules
REFERENCE_PARAMS = {
    "Generator": (10_950_656, 9_230_336, 9_091_072),
    "Discriminator D1": (9_674_753, 8_814_593, 8_744_961),
    "Encoder E": (12_617_184, 9_688_104, 9_466_424),
    "Feedback F": (33_562_624, 33_562_624, 33_562_624),
    "AttDec": (9_670_968, 8_810_598, 8_740_949),
    "FR (FREE)": (10_996_495, 9_295_030, 9_092_720),
    "V2SM": (37_032_248, 36_816_998, 36_799_573),
    "VOPE": (829_374, 88_969, 61_901),
}


def _modules(att_dim: int, num_seen: int) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    x = torch.empty(1, 2048)
    a = torch.empty(1, att_dim)
    return {
        "Generator": (Generator(2048, att_dim, 4096), (a, a)),
        "Discriminator D1": (Critic(2048, att_dim, 4096), (x, a)),
        "Encoder E": (Encoder(2048, att_dim, 4096), (x, a)),
        "Feedback F": (Feedback(4096), (torch.empty(1, 4096),)),
        "AttDec": (AttDec(2048, att_dim, 4096), (x,)),
        "FR (FREE)": (FeatureRefinement(2048, att_dim, 4096, num_seen).eval(), (x,)),
        "V2SM": (V2SM(2048, att_dim, 4096), (x,)),
        "VOPE": (VOPE(att_dim), (a,)),
    }


def module_sizes(dataset: str) -> dict[str, tuple[int, int]]:
    """``{module: (parameters, FLOPs per sample)}`` for CUB, SUN or AWA2 (built on meta)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    att_dim, num_seen = DATASETS[dataset]
    out = {}
    with torch.device("meta"):
        for name, (module, inputs) in _modules(att_dim, num_seen).items():
            out[name] = (count_parameters(module).total, count_flops(module, *inputs).total)
    return out


def info() -> list[Table]:
    rows = []
    sizes = {d: module_sizes(d) for d in DATASETS}
    for i, name in enumerate(REFERENCE_PARAMS):
        row: list = [name]
        for j, dataset in enumerate(DATASETS):
            params, flops = sizes[dataset][name]
            ref = REFERENCE_PARAMS[name][j]
            row += [params, ref, flops]
        rows.append(row)
        del i
    headers = ["module"]
    for dataset in DATASETS:
        headers += [f"{dataset} params", f"{dataset} released code", f"{dataset} FLOPs/sample"]
    table = Table(
        headers,
        rows,
        title="dsp-zsl modules (ResNet-101 features, hidden 4096; d_a 312 / 102 / 85)",
        notes=[
            "released code: the same modules counted in the official TF-VAEGAN / FREE code and "
            "the authors' prototype modules (V2SM, VOPE); FLOPs: one multiply-add = one FLOP",
            "f-CLSWGAN's generator has the Generator's size; its critic the D1 size",
        ],
    )
    published = Table(
        ["method", "CUB U / S / H", "SUN U / S / H", "AWA2 U / S / H"],
        [
            ["f-CLSWGAN (its paper)", "43.7 / 57.7 / 49.7", "42.6 / 36.6 / 39.4", "-"],
            [
                "TF-VAEGAN (its paper)",
                "52.8 / 64.7 / 58.1",
                "45.6 / 40.7 / 43.0",
                "59.8 / 75.1 / 66.6",
            ],
            ["FREE (its paper)", "55.7 / 59.9 / 57.7", "47.4 / 37.2 / 41.7", "60.4 / 75.4 / 67.1"],
            [
                "f-CLSWGAN + DSP (as cited by later work)",
                "51.4 / 63.8 / 56.9",
                "48.3 / 43.0 / 45.5",
                "60.0 / 86.0 / 70.7",
            ],
        ],  # fmt: skip
        title="Published GZSL accuracies (%; xlsa17 ResNet-101 features; not reproduced here)",
        notes=["the DSP paper reports +8.5 / +8.0 / +9.7 H on average over its bases (abstract)"],
    )
    return [table, published]
