"""Eval-mode CPU throughput and peak memory of GroupMixFormer, fused path vs the release's op order.

Baseline: the same weights through the reference path (``set_fused_eval(False)``), an op-for-op
transcription of the released forward (q/k/v as a 3B batch, one call per aggregator branch).
Modes, interleaved round-robin so that machine load hits all alike (median of rounds, after
warm-up rounds), at each thread count in turn:

  reference       release op order, NCHW input
  fused           the default inference path: stem channels-last, BN folded (weights cached),
                  q/k/v channels sorted by branch so each depthwise conv runs once, channels-last,
                  with its real 3/5/7 kernel over the q, k and v channels of its branch; 1x1 convs
                  as matmuls; attention and CRPE token-major, written into the projection input
  fused+compile   optional (--compile): torch.compile of the fused model

    uv run python packages/groupmixformer/benchmarks/throughput.py --variants small base
      --threads 1 2
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

MODES = ("reference", "fused")


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


def time_modes(
    model: nn.Module, x: torch.Tensor, modes: tuple[str, ...], rounds: int, warmup: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median seconds per forward of each mode (interleaved), and each mode's output."""
    runners = {mode: prepare(model, mode, x) for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    outputs = {}
    with torch.inference_mode():
        for _ in range(warmup):  # allocator, weight caches, compilation
            for mode, (fn, inp) in runners.items():
                model.set_fused_eval(mode != "reference")
                outputs[mode] = fn(inp)
        for _ in range(rounds):
            for mode, (fn, inp) in runners.items():
                model.set_fused_eval(mode != "reference")
                start = time.perf_counter()
                fn(inp)
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(t) for mode, t in times.items()}, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["small", "base"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="timed forwards per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per mode")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts to time"
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(fused)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS processes")
    args = parser.parse_args()
    modes = MODES + (("fused+compile",) if args.compile else ())

    print(f"command: {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, load avg {os.getloadavg()[0]:.1f}"
    )
    print(f"batch {args.batch_size} at {args.image_size}x{args.image_size}, eval, inference_mode\n")
    header = (
        f"| {'variant':7} | {'threads':>7} | {'mode':13} | {'img/s':>7} | {'x ref':>5} |"
        f" {'max abs diff':>12} |"
    )
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
        memory = {}
        if not args.no_memory:
            memory = {
                mode: peak_memory_mib(variant, mode, args.batch_size, args.image_size)
                for mode in modes
            }
        for threads in args.threads:
            torch.set_num_threads(threads)
            seconds, outputs = time_modes(model, x, modes, args.rounds, args.warmup)
            for mode in modes:
                speed = args.batch_size / seconds[mode]
                ratio = seconds["reference"] / seconds[mode]
                diff = (outputs[mode] - outputs["reference"]).abs().max().item()
                row = (
                    f"| {variant:7} | {threads:7d} | {mode:13} | {speed:7.2f} | {ratio:5.2f} |"
                    f" {diff:12.2e} |"
                )
                if not args.no_memory:
                    row += f" {memory[mode]:8.0f} |"
                print(row, flush=True)
    print(
        f"\nload avg at the end {os.getloadavg()[0]:.1f}; max RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
