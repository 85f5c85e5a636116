"""Eval-mode CPU throughput and peak memory of GroupMixFormer, fused path vs the release's op order.

Baseline: the same weights through the reference path (``set_fused_eval(False)``), an op-for-op
transcription of the released forward (q/k/v as a 3B batch, one call per aggregator branch).
Variants measured, interleaved round-robin so that machine load hits all alike (median of rounds):

  reference            release op order, NCHW input
  fused                BN folded (weights cached), channel-major (B, channels, N) from qkv to
                       proj: the 4 aggregator branches + local branch of q/k/v as one depthwise
                       7x7 conv + one batched matmul over 15 groups, 3 CRPE convs as one, attention
                       on (B, h, d, N) with the softmax along the contiguous token axis
  fused+channels_last  as fused, input (and so the stem/patch-embed convs) in channels-last
  fused+compile        optional (--compile): torch.compile of the fused model

    uv run python packages/groupmixformer/benchmarks/throughput.py --variants small base
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from groupmixformer import create_groupmixformer
from torch import nn

MODES = ("reference", "fused", "fused+channels_last")


def build(variant: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_groupmixformer(variant).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial BN statistics, as in a trained model
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(
                    0.2 * torch.randn(module.running_mean.shape, generator=gen)
                )
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model


def prepare(model: nn.Module, mode: str, x: torch.Tensor):
    model.set_fused_eval(mode != "reference")
    if mode == "fused+channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if mode == "fused+compile":
        return torch.compile(model), x
    return model, x


def peak_memory_mib(variant: str, mode: str, batch: int, size: int) -> float:
    """Peak RSS of a fresh process that builds the model and runs one forward (MiB)."""
    code = (
        "import resource, torch, sys; sys.argv=['x']; "
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
        "from throughput import build, prepare; "
        f"m = build({variant!r}); "
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"f, x = prepare(m, {mode!r}, torch.randn({batch}, 3, {size}, {size})); "
        "torch.inference_mode().__enter__(); f(x); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["small", "base"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="timed forwards per mode")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(fused)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS processes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = MODES + (("fused+compile",) if args.compile else ())

    print(f"command: {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, {args.threads} threads, load avg {os.getloadavg()[0]:.1f}"
    )
    print(f"batch {args.batch_size} at {args.image_size}x{args.image_size}, eval, inference_mode\n")
    header = f"| {'variant':7} | {'mode':20} | {'img/s':>7} | {'x ref':>5} | {'max abs diff':>12} |"
    header += f" {'peak MiB':>8} |" if not args.no_memory else ""
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for variant in args.variants:
        model = build(variant)
        x = torch.randn(
            args.batch_size,
            3,
            args.image_size,
            args.image_size,
            generator=torch.Generator().manual_seed(1),
        )
        runners = {mode: prepare(model, mode, x) for mode in modes}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        outputs = {}
        with torch.inference_mode():
            for mode, (fn, inp) in runners.items():  # warm-up (and compile)
                model.set_fused_eval(mode != "reference")
                outputs[mode] = fn(inp)
            for _ in range(args.rounds):
                for mode, (fn, inp) in runners.items():
                    model.set_fused_eval(mode != "reference")
                    start = time.perf_counter()
                    fn(inp)
                    times[mode].append(time.perf_counter() - start)
        ref_speed = args.batch_size / statistics.median(times["reference"])
        for mode in modes:
            speed = args.batch_size / statistics.median(times[mode])
            diff = (outputs[mode] - outputs["reference"]).abs().max().item()
            row = f"| {variant:7} | {mode:20} | {speed:7.2f} | {speed / ref_speed:5.2f} | {diff:12.2e} |"
            if not args.no_memory:
                mem = peak_memory_mib(variant, mode, args.batch_size, args.image_size)
                row += f" {mem:8.0f} |"
            print(row, flush=True)
    print(
        f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
