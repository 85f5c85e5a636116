"""timm registration of the five GroupMixFormer variants (imports timm; loaded by the package
``__init__`` when timm imports).

No weights are on any hub: load a released file with
``timm.create_model("groupmixformer_small", pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from groupmixformer.checkpoint import checkpoint_filter_fn
from groupmixformer.config import get_config
from groupmixformer.models.groupmixformer import GroupMixFormer

__all__: list[str] = []


def _create_groupmixformer(variant: str, pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    model_args = get_config(variant).to_dict()
    model_args.pop("num_classes")
    model_args.pop("in_chans")
    return build_model_with_cfg(
        GroupMixFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg={"feature_cls": "getter", "out_indices": out_indices},
        **{**model_args, **kwargs},
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv_stem.proj1",
        "classifier": "head",
        "license": "mit",
        "paper_ids": "arXiv:2311.15157",
        "origin_url": "https://github.com/AILab-CVC/GroupMixFormer",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "groupmixformer_miny.in1k": _cfg(),
        "groupmixformer_tiny.in1k": _cfg(),
        "groupmixformer_small.in1k": _cfg(),
        "groupmixformer_base.in1k": _cfg(),
        "groupmixformer_large.untrained": _cfg(),
    }
)


@register_model
def groupmixformer_miny(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-M: 5.73M params, 1.35 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_miny", pretrained, **kwargs)


@register_model
def groupmixformer_tiny(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-T: 10.95M params, 3.72 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_tiny", pretrained, **kwargs)


@register_model
def groupmixformer_small(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-S: 22.42M params, 5.16 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_small", pretrained, **kwargs)


@register_model
def groupmixformer_base(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-B: 45.83M params, 17.55 GFLOPs at 224."""
    return _create_groupmixformer("groupmixformer_base", pretrained, **kwargs)


@register_model
def groupmixformer_large(pretrained: bool = False, **kwargs: Any) -> GroupMixFormer:
    """GroupMixFormer-L as released (71.83M / 38.2G, not the published 70.3M / 36.1G; no weights)."""
    return _create_groupmixformer("groupmixformer_large", pretrained, **kwargs)
