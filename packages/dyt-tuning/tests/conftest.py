from __future__ import annotations

from collections.abc import Callable, Iterator

import dyt
import pytest
import timm
import torch
from torch import nn

from papers_shared.testing import block_network  # noqa: F401


def _tiny_vit(**overrides) -> nn.Module:
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    args.update(overrides)
    return timm.create_model("vit_base_patch16_224", pretrained=False, **args)


def _tiny_dyt(seed: int = 0, perturb: bool = True, vit_args: dict | None = None, **config):
    """A tiny DyT ViT; ``perturb`` gives the TDs and adapters non-trivial weights."""
    torch.manual_seed(seed)
    model = dyt.convert_vit(_tiny_vit(**(vit_args or {})), **config)
    if perturb:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "token_select" in name and name.endswith("weight"):
                    param.normal_(0.0, 0.5)
                elif "adapt" in name and param.requires_grad:
                    param.normal_(0.0, 0.1)
    return model


def _counted_part(breakdown) -> float:
    """What the shared FLOP counter sees of an analytic count: it also counts the token
    dispatchers' matmuls, and LayerNorm only where it counts normalisation layers."""
    from papers_shared.counting import count_flops

    norms = count_flops(nn.LayerNorm(4), torch.randn(2, 4)).total > 0
    return breakdown.total - (0 if norms else breakdown.layernorm) + breakdown.dispatcher


@pytest.fixture
def counted_part() -> Callable[..., float]:
    return _counted_part


@pytest.fixture
def tiny_vit() -> Callable[..., nn.Module]:
    return _tiny_vit


@pytest.fixture
def tiny_dyt() -> Callable[..., nn.Module]:
    return _tiny_dyt


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and test machines are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
