"""Eval throughput of ViT-B/16 (random weights, 224x224): dense vs DyT with real skipping.

Prints, from one run, the wall-clock speed-up next to the FLOPs ratio (target: speed-up at
least 0.9x the FLOPs ratio). The token dispatchers are random, so their biases are calibrated
layer by layer on the batch to activate a fraction ``--rate`` of the patch tokens, as a trained
r=0.5 model does (the paper's trained masks keep about 54% of the patch tokens).

    uv run python packages/dyt-tuning/benchmarks/bench_inference.py --batch-size 32 --rounds 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import dyt
import timm
import torch
from dyt.flops import ViTDims, dyt_flops


@torch.no_grad()
def calibrate_dispatchers(model: torch.nn.Module, images: torch.Tensor, rate: float) -> None:
    """Shift each TD bias so that a fraction ``rate`` of the patch tokens is active."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    for block in model.blocks:
        after_attention = x + block._attention(x)
        logits = block.mlp_token_select.mlp_head(after_attention[:, model.num_prefix_tokens :])
        block.mlp_token_select.mlp_head.bias -= torch.quantile(logits.flatten(), 1.0 - rate)
        x = block(x)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, 224, 224)
    dense = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100).eval()
    base = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100)
    base.load_state_dict(dense.state_dict())
    model = dyt.convert_vit(base, bottleneck=8, rate=args.rate).eval()
    with torch.no_grad():
        for block in model.blocks:  # a trained adapter is not zero
            block.adaptmlp.up_proj.weight.normal_(0, 0.01)
    calibrate_dispatchers(model, images, args.rate)

    runs = {
        "dense ViT-B/16": lambda: dense(images),
        f"DyT r={args.rate} sparse (default eval)": lambda: model(images),
        f"DyT r={args.rate} dense masked": lambda: dyt.forward_dyt(model, images, sparse=False),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for run in runs.values():  # warm-up
            run()
        for _ in range(args.rounds):  # interleaved so load spikes hit every variant
            for name, run in runs.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)

    per_image_flops, active = dyt.eval_flops(model, images)
    dims = ViTDims.from_model(model)
    dense_flops = dyt_flops(dims).total
    dyt_mean_flops = float(per_image_flops.mean())
    flops_ratio = dense_flops / dyt_mean_flops
    activation = float(active.mean() / dims.num_patches)

    print(
        f"# {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"timm {timm.__version__}; batch {args.batch_size}, 224x224, {args.rounds} rounds"
    )
    print(f"# DyT eval activation {activation:.3f} (patch tokens through the MLP)")
    print("| model | GFLOPs/img | median s/batch | img/s | speed-up vs dense |")
    print("|---|---|---|---|---|")
    baseline = statistics.median(times["dense ViT-B/16"])
    gflops = {"dense ViT-B/16": dense_flops / 1e9}
    for name, values in times.items():
        seconds = statistics.median(values)
        flops = gflops.get(
            name, (dyt_flops(dims, 8).total if "masked" in name else dyt_mean_flops) / 1e9
        )
        print(
            f"| {name} | {flops:.2f} | {seconds:.3f} | {args.batch_size / seconds:.2f} | "
            f"{baseline / seconds:.2f}x |"
        )
    speedup = baseline / statistics.median(times[f"DyT r={args.rate} sparse (default eval)"])
    print(
        f"\nFLOPs ratio {flops_ratio:.2f}x, wall-clock speed-up {speedup:.2f}x, "
        f"speed-up / FLOPs ratio = {speedup / flops_ratio:.2f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
