"""Thin helpers over torch.distributed so trainers run unchanged under ``torchrun`` /
``accelerate launch`` (DDP; gloo on CPU, NCCL on GPU) and as a plain single process."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistContext",
    "init_distributed",
    "cleanup_distributed",
    "wrap_ddp",
    "unwrap_model",
    "all_reduce_mean",
    "autocast",
    "run_torchrun",
]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistContext:
    """Read the launcher's env (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and join the group.

    ``device=None`` picks ``cuda:<local_rank>`` when CUDA is available, else CPU. Without a
    launcher this is a no-op returning a single-process context.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def cleanup_distributed() -> None:
    """Leave the process group. Drop every ``DistributedDataParallel`` wrapper first (return
    from the function that holds it): a wrapper that outlives its group is torn down at
    interpreter exit, where gloo aborts the process now and then ("terminate called without
    an active exception", exit code -6) although the work itself finished. Unreachable
    wrappers in reference cycles are collected here."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def wrap_ddp(
    model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False, **ddp_kwargs: Any
) -> nn.Module:
    """Wrap in ``DistributedDataParallel`` when running distributed; otherwise return ``model``.

    ``ddp_kwargs`` go to DDP unchanged (e.g. ``static_graph``, ``broadcast_buffers``).
    """
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=device_ids,
        find_unused_parameters=find_unused_parameters,
        **ddp_kwargs,
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner
        else:
            return model


def all_reduce_mean(value: float | torch.Tensor) -> float:
    """Average a scalar over ranks (identity when not distributed)."""
    tensor = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return float(tensor)


@contextlib.contextmanager
def autocast(
    device: torch.device,
    enabled: bool = True,
    dtype: torch.dtype = torch.bfloat16,
    *,
    allow_cpu: bool = False,
) -> Iterator[None]:
    """Mixed precision on GPU (bf16 by default); a no-op on CPU so CPU results stay fp32,
    unless ``allow_cpu`` (CPU autocast, bf16 only)."""
    if enabled and (device.type == "cuda" or (allow_cpu and device.type == "cpu")):
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
    else:
        yield


def run_torchrun(
    args: Sequence[str],
    nproc: int = 2,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    *,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc_per_node=nproc <args>`` (for tests of DDP trainers).

    ``check=True`` raises ``RuntimeError`` with the end of stderr when the job fails.
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *args,
    ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"torchrun exited with {result.returncode}; end of stderr:\n{result.stderr[-3000:]}"
        )
    return result
