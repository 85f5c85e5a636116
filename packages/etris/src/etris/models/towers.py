"""Frozen CLIP towers from open_clip, stepped block by block so that the two towers interleave.

Also: the ViT position-grid resize (bicubic, no antialias), the dense attention pool that replaces
open_clip's pooled ``attnpool`` for ResNets, and CLIP weight loading.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "create_clip",
    "resize_vit_pos_embed",
    "add_connect",
    "dense_attention_pool",
    "tower_dims",
    "text_embed",
    "text_outputs",
    "vit_embed",
    "load_clip_weights",
]

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# entries an OpenAI JIT archive's state dict holds that are not parameters
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - a hard dependency, but say so clearly
        raise ImportError(
            "etris needs open_clip: pip install open_clip_torch (a dependency of etris)"
        ) from err
    return open_clip


def is_vit_config(model_cfg: dict[str, Any]) -> bool:
    """True when an open_clip config describes a ViT image tower (a patch size is set)."""
    return model_cfg["vision_cfg"].get("patch_size") is not None


def clip_model_config(name: str, clip_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The open_clip config dict for ``name`` (or ``clip_config`` when given), deep-copied."""
    if clip_config is not None:
        return copy.deepcopy(clip_config)
    cfg = _open_clip().get_model_config(name)
    if cfg is None:
        raise ValueError(
            f"unknown open_clip model {name!r}; ETRIS uses RN50-quickgelu, RN101-quickgelu or "
            "ViT-B-16-quickgelu"
        )
    return copy.deepcopy(cfg)


def create_clip(
    name: str,
    image_size: int,
    clip_config: dict[str, Any] | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """Build an open_clip ``CLIP`` with QuickGELU; ViT towers are built for ``image_size``.

    ResNet towers keep their 224-px attention-pool positions (7x7 + 1 rows), as in the paper's code.
    ``pretrained`` (a tag or a local file) is loaded with :func:`load_clip_weights`, which resizes
    the ViT position grid itself (bicubic, no antialias).
    """
    open_clip = _open_clip()
    from open_clip.model import CLIP

    cfg = clip_model_config(name, clip_config)
    cfg["quick_gelu"] = True
    if is_vit_config(cfg):
        cfg["vision_cfg"]["image_size"] = image_size
    model = CLIP(**cfg)
    if pretrained:
        looks_like_path = any(sep in pretrained for sep in ("/", "\\")) or pretrained.endswith(
            (".pt", ".pth", ".bin", ".safetensors")
        )
        if Path(pretrained).exists() or looks_like_path:
            state = read_clip_checkpoint(pretrained)
        else:
            # a named tag: let open_clip fetch its native-size weights, then resize ourselves
            src = open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=True)
            state = src.state_dict()
        load_clip_weights(model, state)
    return model


def read_clip_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a CLIP checkpoint: an OpenAI JIT archive (RN50.pt, ...) or a plain/safetensors state dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"CLIP checkpoint not found: {path} (OpenAI's RN50.pt / RN101.pt / ViT-B-16.pt, or an "
            "open_clip state dict)"
        )
    if _is_jit_archive(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            jit = torch.jit.load(str(path), map_location="cpu")
        state = dict(jit.state_dict())
    else:
        from papers_shared.checkpoint import read_state_dict

        state = read_state_dict(path)
    return {k: v.float() for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS}


def _is_jit_archive(path: Path) -> bool:
    """A TorchScript archive (OpenAI's CLIP files) holds a ``code/`` folder in its zip."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def resize_vit_pos_embed(pos_embed: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Resize a ViT position table (1 + g*g, C) to (1 + grid_size**2, C).

    Bicubic, ``align_corners=False``, **antialias=False** (as the paper's code; open_clip's own
    loader antialiases, which gives different numbers); the class row is kept unchanged.
    """
    cls_row, grid = pos_embed[:1], pos_embed[1:]
    old = math.isqrt(grid.shape[0])
    if old * old != grid.shape[0]:
        raise ValueError(f"position table has {grid.shape[0]} grid rows, not a square number")
    if old == grid_size:
        return pos_embed.clone()
    work = pos_embed.dtype if pos_embed.dtype in (torch.float32, torch.float64) else torch.float32
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).to(work)
    grid = F.interpolate(
        grid, size=(grid_size, grid_size), mode="bicubic", align_corners=False, antialias=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(grid_size * grid_size, -1).to(pos_embed.dtype)
    return torch.cat([cls_row, grid], dim=0)


def load_clip_weights(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Load CLIP weights into an open_clip ``CLIP`` (strict), resizing the ViT grid if needed."""
    state = {k: v for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS}
    key = "visual.positional_embedding"
    own = model.state_dict()
    if key in state and hasattr(model.visual, "grid_size") and state[key].shape != own[key].shape:
        grid = model.visual.grid_size[0]
        logger.info("resizing the ViT position grid to %dx%d", grid, grid)
        state[key] = resize_vit_pos_embed(state[key], grid)
    from papers_shared.checkpoint import load_state_dict_checked

    load_state_dict_checked(model, state, source="CLIP weights")


def add_connect(attnpool: Any) -> None:
    """Give open_clip's ``attnpool`` the dense pool's shortcut ``connect`` = Conv1x1 (no bias) + BN.

    It lives inside the (frozen) backbone, so its keys are ``visual.attnpool.connect.*`` as in
    the paper's checkpoints; it is randomly initialised (PyTorch defaults) and frozen by default.
    """
    if not hasattr(attnpool, "connect"):
        embed_dim = attnpool.c_proj.in_features
        out_dim = attnpool.c_proj.out_features
        attnpool.connect = nn.Sequential(
            nn.Conv2d(embed_dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim)
        )


def dense_attention_pool(attnpool: Any, x: torch.Tensor) -> torch.Tensor:
    """CLIP's attention pool applied densely (every position is a query), plus ``connect``.

    Uses open_clip's ``attnpool`` weights (``q/k/v/c_proj``, ``positional_embedding``).
    x: (B, C, H, W) -> (B, D_out, H, W); out = ReLU(MHA(x + P) + connect(x)), P = the 7x7
    position rows (class row dropped) resized bicubically (align_corners=False) to H x W; no mean
    token is prepended.
    """
    batch, channels, height, width = x.shape
    residual = attnpool.connect(x)
    pos = attnpool.positional_embedding[1:]
    side = math.isqrt(pos.shape[0])
    pos = pos.reshape(1, side, side, channels).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(height, width), mode="bicubic", align_corners=False)
    tokens = (x + pos.to(x.dtype)).flatten(2).permute(2, 0, 1)  # (HW, B, C)
    out, _ = F.multi_head_attention_forward(
        query=tokens,
        key=tokens,
        value=tokens,
        embed_dim_to_check=channels,
        num_heads=attnpool.num_heads,
        q_proj_weight=attnpool.q_proj.weight,
        k_proj_weight=attnpool.k_proj.weight,
        v_proj_weight=attnpool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=attnpool.c_proj.weight,
        out_proj_bias=attnpool.c_proj.bias,
        use_separate_proj_weight=True,
        training=False,
        need_weights=False,
    )
    out = out.permute(1, 2, 0).reshape(batch, -1, height, width)
    return F.relu(out + residual)


def tower_dims(clip: Any) -> dict[str, Any]:
    """Channel widths the Bridger and neck need: stage maps, text width, output dim, neck inputs."""
    visual = clip.visual
    text_width = clip.token_embedding.weight.shape[1]
    if hasattr(visual, "transformer"):
        width = visual.conv1.out_channels
        return {
            "is_vit": True,
            "stage_channels": (width, width, width),
            "text_width": text_width,
            "out_dim": visual.output_dim,
            "fpn_in": (width, width, visual.output_dim),
        }
    c3 = visual.layer2[-1].conv3.out_channels
    c4 = visual.layer3[-1].conv3.out_channels
    c5 = visual.layer4[-1].conv3.out_channels
    return {
        "is_vit": False,
        "stage_channels": (c3, c4, c5),
        "text_width": text_width,
        "out_dim": visual.output_dim,
        "fpn_in": (c3, c4, visual.output_dim),
    }


def text_embed(clip: Any, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token + position embedding and the causal mask sliced to L. ids: (B, L) -> (B, L, C), (L, L)."""
    length = ids.shape[1]
    x = clip.token_embedding(ids) + clip.positional_embedding[:length]
    return x, clip.attn_mask[:length, :length]


def text_outputs(
    clip: Any, x: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """words = ln_final(x): (B, L, C); state = words at argmax(ids) @ text_projection: (B, D_out)."""
    words = clip.ln_final(x)
    pooled = words[torch.arange(words.shape[0], device=words.device), ids.argmax(dim=-1)]
    proj = clip.text_projection
    state = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
    return words, state


def vit_embed(visual: Any, image: torch.Tensor) -> torch.Tensor:
    """Patch + class + position embedding and ln_pre. image: (B, 3, H, W) -> (B, 1 + N, C)."""
    x = visual.conv1(image)
    grid = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    pos = visual.positional_embedding
    if pos.shape[0] != x.shape[1]:
        raise ValueError(
            f"the ViT tower was built for {math.isqrt(pos.shape[0] - 1)}x{math.isqrt(pos.shape[0] - 1)} "
            f"patches but the image gives {grid[0]}x{grid[1]}; build it with image_size="
            f"{grid[0] * visual.conv1.stride[0]}"
        )
    return visual.ln_pre(x + pos.to(x.dtype))
