"""``instructdet info``: the pipeline's checkable models, their sizes and FLOPs beside the paper's.

The pipeline trains nothing; its CPU-checkable parts are the CLIP filter (OpenAI ViT-B/32, QuickGELU)
and the BERT embedder for clustering. FLOPs count one multiply-add as one FLOP (fvcore's convention,
as the papers report them).
"""

from __future__ import annotations

from typing import Any

from papers_shared.methods import Table

__all__ = ["info", "PAPER_PARAMS"]

#: Sizes of the released models (OpenAI CLIP ViT-B/32; bert-base-uncased with its pooler).
PAPER_PARAMS = {"CLIP ViT-B/32 (filter)": 151_277_313, "bert-base-uncased (clusters)": 109_482_240}


def _clip_row() -> list[object]:
    import open_clip
    import torch

    from papers_shared.counting import count_flops, count_parameters

    model: Any = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    params = count_parameters(model).total
    image_flops = count_flops(model.encode_image, torch.zeros(1, 3, 224, 224)).total
    text_flops = count_flops(model.encode_text, torch.zeros(1, 77, dtype=torch.long)).total
    name = "CLIP ViT-B/32 (filter)"
    return [name, params, PAPER_PARAMS[name], f"{image_flops / 1e9:.2f} / {text_flops / 1e9:.2f}"]


def _bert_row() -> list[object]:
    name = "bert-base-uncased (clusters)"
    try:
        import torch
        from transformers import BertConfig, BertModel
    except ImportError:
        return [name, "needs instructdet[hf]", PAPER_PARAMS[name], "-"]
    from papers_shared.counting import count_flops, count_parameters

    model = BertModel(BertConfig()).eval()
    params = count_parameters(model).total
    flops = count_flops(model, input_ids=torch.zeros(1, 32, dtype=torch.long)).total
    return [name, params, PAPER_PARAMS[name], f"{flops / 1e9:.2f} (32 tokens)"]


def info() -> list[Table]:
    rows = [_clip_row(), _bert_row()]
    return [
        Table(
            ["model", "params (ours)", "params (paper)", "GFLOPs per image / per text"],
            rows,
            title="instructdet: models the pipeline runs on CPU (one multiply-add = one FLOP)",
            notes=[
                "The 13B caption VLM, LLM and visual-prompt VLM of the paper (LLaVA-1.5-13B, "
                "Vicuna-13B v1.3, MiniGPT-4) run through the hf or openai backends; nothing is trained.",
                "CLIP FLOPs: one 224 px image through the image tower / one 77-token text.",
            ],
        )
    ]
