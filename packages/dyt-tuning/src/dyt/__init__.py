"""DyT: Dynamic Tuning for parameter- and inference-efficient ViT adaptation (NeurIPS 2024).

Importing registers the timm names ``dyt_vit_test``, ``dyt_vit_base_patch16_224`` and
``dyt_vit_large_patch16_224``.
"""

from dyt._version import __version__
from dyt.config import DyTConfig, TrainConfig, get_train_preset
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
from dyt.train import evaluate, train

__all__ = [
    "Adapter",
    "DyTConfig",
    "DyTLoss",
    "DyTBlock",
    "DyTSwinBlock",
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
