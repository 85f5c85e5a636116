"""CPU time of one depthwise conv, NCHW vs channels-last, at GroupMixFormer-S stage 0/2 shapes.

This is the measurement behind the fused path's layout choice: oneDNN's NCHW depthwise kernels
are much slower than its channels-last ones for 3x3 and 5x5 on large maps. Single thread,
process CPU time (robust to other load on the machine), median of rounds.

    uv run python packages/groupmixformer/benchmarks/depthwise_layout.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def conv_cpu_ms(x: torch.Tensor, weight: torch.Tensor, rounds: int) -> float:
    """Median CPU milliseconds of one depthwise conv (padding k // 2) of ``x``."""
    padding, groups = weight.shape[-1] // 2, weight.shape[0]
    times = []
    with torch.inference_mode():
        F.conv2d(x, weight, padding=padding, groups=groups)  # warm-up
        for _ in range(rounds):
            start = time.process_time()
            F.conv2d(x, weight, padding=padding, groups=groups)
            times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, batch {args.batch_size}, CPU ms per conv\n")
    print("| channels | map     | kernel | NCHW ms | channels-last ms | NCHW / CL |")
    print("|----------|---------|--------|---------|------------------|-----------|")
    for channels, size in ((48, 56), (256, 14)):  # S: 3c at stage 0, 4c at stage 2
        x = torch.randn(args.batch_size, channels, size, size)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        for kernel in (3, 5, 7):
            weight = torch.randn(channels, 1, kernel, kernel)
            nchw = conv_cpu_ms(x, weight, args.rounds)
            last = conv_cpu_ms(x_cl, weight, args.rounds)
            print(
                f"| {channels:8d} | {size:3d}x{size:<3d} | {kernel:6d} | {nchw:7.2f} |"
                f" {last:16.2f} | {nchw / last:9.1f} |"
            )


if __name__ == "__main__":
    main()
