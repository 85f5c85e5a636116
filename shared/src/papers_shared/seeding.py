"""Seeding and determinism."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "seed_hash"]


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch CPU generator seeded alike.

    With ``deterministic=True`` torch is also asked for deterministic kernels (cuDNN
    benchmark off, ``use_deterministic_algorithms(True, warn_only=True)``).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def seed_hash(*args: object) -> int:
    """DomainBed's ``misc.seed_hash``: an int in [0, 2**31) from the md5 of ``str(args)``.

    Used so that adding one hyper-parameter or one domain leaves every other draw unchanged.
    """
    args_str = str(args)
    return int(hashlib.md5(args_str.encode("utf-8")).hexdigest(), 16) % (2**31)
