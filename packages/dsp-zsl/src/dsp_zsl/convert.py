"""Load the baselines' saved networks into a DSP model.

The baselines' scripts save each network's ``state_dict()`` under its script name (``netG``,
``netD``, ``netE``, ``netF``, ``netDec``, ``netFR``; f-CLSWGAN's pre-trained classifier as
``netCls``), either one file per network or together in one dict beside non-tensor entries
(``epoch``, ``args``, ...). Our modules keep the baselines' attribute names, so the keys map one to
one; ``module.`` prefixes from ``DataParallel`` are stripped. DSP checkpoints written by
:func:`dsp_zsl.train.save_dsp_checkpoint` hold ``netV2SM`` / ``netVOPE`` / ``A`` / ``Z`` as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dsp_zsl.train import DSPModel
from papers_shared.checkpoint import load_state_dict_checked, read_checkpoint, unwrap_state_dict

__all__ = ["BASELINE_NETS", "load_baseline_nets", "read_baseline_file"]

BASELINE_NETS: dict[str, dict[str, tuple[str, ...]]] = {
    "clswgan": {"generator": ("netG",), "critic": ("netD", "netCls")},
    "tfvaegan": {"generator": ("netG", "netE", "netF"), "critic": ("netD", "netDec")},
    "free": {"generator": ("netG", "netE"), "critic": ("netD", "netFR")},
}
"""Networks of each base as the official scripts name them, by side of our model."""


def read_baseline_file(
    path: str | Path, *, trust_checkpoint: bool = False
) -> dict[str, dict[str, torch.Tensor]]:
    """``{net name: state dict}`` from a file holding ``{"netG": sd, "netD": sd, ...}``."""
    obj = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a dict of networks")
    nets = {
        str(k): unwrap_state_dict(v, source=f"{path}[{k}]")
        for k, v in obj.items()
        if str(k).startswith("net") and isinstance(v, Mapping)
    }
    if not nets:
        raise ValueError(f"{path} holds no 'net*' entries; keys: {sorted(map(str, obj))}")
    return nets


def load_baseline_nets(
    model: DSPModel,
    nets: Mapping[str, Mapping[str, Any]],
    *,
    strict: bool = True,
    source: str = "checkpoint",
) -> list[str]:
    """Load the baseline networks ``nets`` (``{"netG": state dict, ...}``) into ``model``;
    returns the names loaded. With ``strict`` every network of the base must be present."""
    base = model.cfg.base
    layout = BASELINE_NETS[base]
    loaded = []
    for side_name, names in layout.items():
        side = model.generator if side_name == "generator" else model.critic
        for name in names:
            module = getattr(side, name, None)
            if module is None:
                continue  # e.g. netF when the feedback loop is off
            if name not in nets:
                if strict:
                    raise ValueError(
                        f"{source} lacks {name} of base {base!r}; it holds {sorted(nets)}"
                    )
                continue
            state = unwrap_state_dict(dict(nets[name]), source=f"{source}[{name}]")
            load_state_dict_checked(module, state, source=f"{source}[{name}]", expected=name)
            loaded.append(name)
    for name in ("netV2SM", "netVOPE"):
        module = getattr(model.generator, name, None)
        if module is not None and name in nets:
            state = unwrap_state_dict(dict(nets[name]), source=f"{source}[{name}]")
            load_state_dict_checked(module, state, source=f"{source}[{name}]", expected=name)
            loaded.append(name)
    return loaded
