"""DyT: Dynamic Tuning for parameter- and inference-efficient ViT adaptation (NeurIPS 2024).

``import dyt`` is cheap (no torch): the names below load on first use. Importing
``dyt.models`` (which any model name does) registers the timm names ``dyt_vit_test``,
``dyt_vit_base_patch16_224`` and ``dyt_vit_large_patch16_224``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyt._version import __version__
from dyt.config import DyTConfig, TrainConfig, get_train_preset
from papers_shared.lazy import lazy_exports

if TYPE_CHECKING:
    from dyt.convert import (
        load_adapter,
        load_backbone,
        load_official_checkpoint,
        save_adapter,
        save_official_checkpoint,
    )
    from dyt.data.vtab import VTABFolder, vtab_group_means
    from dyt.flops import ViTDims, dyt_flops, eval_flops, flops_from_masks
    from dyt.losses import DyTLoss
    from dyt.models import (
        Adapter,
        DyTBlock,
        DyTSwinBlock,
        DyTVideoTransformer,
        MoEAdapter,
        TokenDispatcher,
        convert_swin,
        convert_vit,
        convert_vit_to_video,
        dispatch_mode,
        forward_dyt,
        get_dyt_config,
        set_sparse_inference,
        swin_flops,
        trainable_state_dict,
    )
    from dyt.train import DyTTask, evaluate, train

_LAZY = {
    **dict.fromkeys(
        ("load_adapter", "load_backbone", "load_official_checkpoint", "save_adapter",
         "save_official_checkpoint"), "dyt.convert",
    ),
    **dict.fromkeys(("VTABFolder", "vtab_group_means"), "dyt.data.vtab"),
    **dict.fromkeys(("ViTDims", "dyt_flops", "eval_flops", "flops_from_masks"), "dyt.flops"),
    "DyTLoss": "dyt.losses",
    **dict.fromkeys(
        ("Adapter", "DyTBlock", "DyTSwinBlock", "DyTVideoTransformer", "MoEAdapter",
         "TokenDispatcher", "convert_swin", "convert_vit", "convert_vit_to_video",
         "dispatch_mode", "forward_dyt", "get_dyt_config", "set_sparse_inference", "swin_flops",
         "trainable_state_dict"), "dyt.models",
    ),
    **dict.fromkeys(("DyTTask", "evaluate", "train"), "dyt.train"),
}  # fmt: skip

__all__ = [
    "Adapter",
    "DyTBlock",
    "DyTConfig",
    "DyTLoss",
    "DyTSwinBlock",
    "DyTTask",
    "DyTVideoTransformer",
    "MoEAdapter",
    "TokenDispatcher",
    "TrainConfig",
    "VTABFolder",
    "ViTDims",
    "__version__",
    "convert_swin",
    "convert_vit",
    "convert_vit_to_video",
    "dispatch_mode",
    "dyt_flops",
    "eval_flops",
    "evaluate",
    "flops_from_masks",
    "forward_dyt",
    "get_dyt_config",
    "get_train_preset",
    "load_adapter",
    "load_backbone",
    "load_official_checkpoint",
    "save_adapter",
    "save_official_checkpoint",
    "set_sparse_inference",
    "swin_flops",
    "train",
    "trainable_state_dict",
    "vtab_group_means",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
