"""Official ETRIS checkpoints -> this package's model, and back.

The official training script saves ``torch.save({"epoch", "cur_iou", "best_iou", "prec",
"state_dict", "optimizer", "scheduler"})`` with DDP keys ``module.backbone.*``, ``module.bridger.*``,
``module.neck.*``, ``module.decoder.*``, ``module.proj.*``. Our module names are the official
ones (open_clip's CLIP parameter names equal OpenAI's, and the dense pool's shortcut lives at
``backbone.visual.attnpool.connect``), so conversion strips the wrapper, drops entries that are
not parameters or buffers of the model (OpenAI's ``input_resolution`` / ``context_length`` /
``vocab_size``), and resizes a 224-px ViT position grid (bicubic, no antialias) when needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from etris.models.towers import resize_vit_pos_embed

__all__ = [
    "convert_official_state_dict",
    "load_official_checkpoint",
    "to_official_checkpoint",
    "load_etris_weights",
]

_DROP_SUFFIXES = ("input_resolution", "context_length", "vocab_size")
_GROUPS = ("backbone.", "bridger.", "neck.", "decoder.", "proj.")


def convert_official_state_dict(
    state: Mapping[str, Any], model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Official ETRIS keys -> ours: strip ``module.``, keep tensors of the five groups, drop
    OpenAI metadata, resize the ViT position grid to ``model``'s when it differs."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.endswith(_DROP_SUFFIXES) and key.count(".") == 1:
            continue
        if not key.startswith(_GROUPS):
            raise ValueError(
                f"unexpected key {key!r}: an ETRIS checkpoint holds only {', '.join(_GROUPS)} keys"
            )
        out[key] = value
    pos_key = "backbone.visual.positional_embedding"
    if model is not None and pos_key in out:
        own = model.state_dict().get(pos_key)
        if own is not None and own.shape != out[pos_key].shape:
            side = int((own.shape[0] - 1) ** 0.5)
            out[pos_key] = resize_vit_pos_embed(out[pos_key], side)
    return out


def load_official_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load an official ETRIS ``.pth`` into ``model`` (strict, every problem reported at once).

    Returns the checkpoint's non-tensor metadata (epoch, best_iou, ...) when present.
    """
    from papers_shared.checkpoint import load_state_dict_checked

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint not found: {path} (the official ETRIS releases are .pth files holding "
            "'state_dict'; this package's runs write model.safetensors)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Any = load_file(str(path))
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    meta: dict[str, Any] = {}
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        meta = {k: v for k, v in raw.items() if k in ("epoch", "cur_iou", "best_iou", "prec")}
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(raw).__name__})")
    state = convert_official_state_dict(raw, model)
    load_state_dict_checked(model, state, source=str(path))
    return meta


def to_official_checkpoint(model: nn.Module, epoch: int = 0, best_iou: float = 0.0) -> dict:
    """Our model in the official container (``module.`` keys), e.g. to use the official scripts."""
    return {
        "epoch": epoch,
        "cur_iou": best_iou,
        "best_iou": best_iou,
        "prec": {},
        "state_dict": {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": {},
        "scheduler": {},
    }


def load_etris_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights from one of: a run folder (its model.safetensors), our safetensors file, or an
    official ``.pth``; returns checkpoint metadata (empty for our files)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    return load_official_checkpoint(model, path)
