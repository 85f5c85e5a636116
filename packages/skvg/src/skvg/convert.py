"""TransVG checkpoints -> KeViLI / TransVG.

TransVG's training script saves ``{"model": state_dict, "optimizer": ..., "lr_scheduler": ...,
"epoch": int, "args": argparse.Namespace}``. Its keys are this package's keys (``visumodel.*``,
``textmodel.bert.*``, ...); ``num_batches_tracked`` buffers are dropped (frozen BN). Loading into
KeViLI leaves exactly the knowledge-embedding keys missing.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from papers_shared.checkpoint import read_state_dict

__all__ = ["load_transvg_checkpoint", "KNOWLEDGE_PREFIXES"]

KNOWLEDGE_PREFIXES = ("ke_encoder.", "ke_pos_embed.", "know_proj.", "knowmodel.")


def load_transvg_checkpoint(
    model: nn.Module, path: str | Path, *, trust_checkpoint: bool = False
) -> list[str]:
    """Load a TransVG checkpoint; return the missing knowledge keys. Any other mismatch raises
    ``ValueError`` naming the first keys."""
    state = read_state_dict(path, trust_checkpoint=trust_checkpoint)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(KNOWLEDGE_PREFIXES)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} is not a TransVG checkpoint for this configuration: {len(missing)} missing keys "
            f"{missing[:5]}, {len(result.unexpected_keys)} unexpected keys {list(result.unexpected_keys)[:5]}"
        )
    return [k for k in result.missing_keys if k.startswith(KNOWLEDGE_PREFIXES)]
