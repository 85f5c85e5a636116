"""DyT models: layers, dispatch blocks for timm ViT and Swin, and the video model."""

from dyt.models.dispatch import (
    DispatchBlock,
    dispatch_blocks,
    dispatch_mode,
    forward_dyt,
    get_dyt_config,
    is_dyt_model,
    set_sparse_inference,
    trainable_state_dict,
)
from dyt.models.dyt_swin import DyTSwinBlock, convert_swin, swin_flops
from dyt.models.dyt_vit import (
    AttnDispatchBlock,
    AttnMLPDispatchBlock,
    DyTBlock,
    LayerDispatchBlock,
    convert_vit,
)
from dyt.models.layers import Adapter, MoEAdapter, TokenDispatcher, gumbel_sigmoid_mask
from dyt.models.video import DyTVideoTransformer, convert_vit_to_video

__all__ = [
    "Adapter",
    "AttnDispatchBlock",
    "AttnMLPDispatchBlock",
    "DispatchBlock",
    "DyTBlock",
    "DyTSwinBlock",
    "DyTVideoTransformer",
    "LayerDispatchBlock",
    "MoEAdapter",
    "TokenDispatcher",
    "convert_swin",
    "convert_vit",
    "convert_vit_to_video",
    "dispatch_blocks",
    "dispatch_mode",
    "forward_dyt",
    "get_dyt_config",
    "gumbel_sigmoid_mask",
    "is_dyt_model",
    "set_sparse_inference",
    "swin_flops",
    "trainable_state_dict",
]
