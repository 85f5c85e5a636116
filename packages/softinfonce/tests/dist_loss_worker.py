"""Run under torchrun (2 ranks, gloo): the gathered SoftInfoNCE equals the single-process one."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from softinfonce.losses import soft_info_nce


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    n, dim = 8, 6  # clips over all ranks
    gen = torch.Generator().manual_seed(0)
    zv, za = torch.randn(2 * n, dim, generator=gen), torch.randn(2 * n, dim, generator=gen)
    clip_ids = torch.arange(n).repeat(2)
    view_ids = torch.arange(2).repeat_interleave(n)
    speeds = torch.tensor([1.0] * n + [3.0] * n)
    local_clips = torch.arange(rank * n // world, (rank + 1) * n // world)
    rows = torch.cat(
        [local_clips, local_clips + n]
    )  # this rank's speed-1 views, then its speed-s views

    results = {}
    for mode in ("feature", "ratio", "zero"):
        full_v, full_a = zv.clone().requires_grad_(), za.clone().requires_grad_()
        full = soft_info_nce(
            full_v, full_a, clip_ids, view_ids, speeds, weight_mode=mode, gather=False
        )
        full.loss.backward()
        local_v, local_a = zv[rows].clone().requires_grad_(), za[rows].clone().requires_grad_()
        local = soft_info_nce(
            local_v, local_a, clip_ids[rows], view_ids[rows], speeds[rows], weight_mode=mode
        )
        local.loss.backward()
        mean_loss = local.loss.detach().clone()
        dist.all_reduce(mean_loss)
        results[mode] = {
            "loss_error": float((mean_loss / world - full.loss).abs()),
            "grad_error": float(
                torch.maximum(
                    (local_v.grad / world - full_v.grad[rows]).abs().max(),
                    (local_a.grad / world - full_a.grad[rows]).abs().max(),
                )
            ),
            "candidates": local.num_candidates,
        }
    if rank == 0:
        with open(out_path, "w") as handle:
            json.dump(results, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
