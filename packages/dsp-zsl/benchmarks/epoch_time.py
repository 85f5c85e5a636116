"""Epoch time of each base alone vs base + DSP on CUB-sized generated data.

CUB-sized: 11,788 features of 2,048 dimensions, 200 classes (150 seen / 50 unseen), d_a 312,
trainval 7,057 (so 110 generator steps per epoch at batch 64), hidden 4,096, each base's released
critic_iter. The timed unit is the trainer's step of :class:`dsp_zsl.train.DSPTask` (critic steps
+ generator step + backward + optimizer step); an epoch is ``steps_per_epoch`` of them. With
``--steps N`` only N steps are timed (after one warm-up step) and the epoch time is their mean
times ``steps_per_epoch`` (the printout says so); ``--steps 0`` runs whole epochs.

    OMP_NUM_THREADS=2 uv run --no-sync python packages/dsp-zsl/benchmarks/epoch_time.py --steps 3
    uv run --no-sync python packages/dsp-zsl/benchmarks/epoch_time.py --device cuda --steps 0
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from dsp_zsl.config import get_preset
from dsp_zsl.data.xlsa17 import ZSLData
from dsp_zsl.train import DSPTask


def cub_sized(seed: int = 0) -> ZSLData:
    rng = np.random.default_rng(seed)
    n, classes, seen = 11_788, 200, 150
    labels = rng.integers(0, classes, size=n)
    feats = rng.random((n, 2048), dtype=np.float32)
    protos = rng.random((classes, 312)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    seen_mask = labels < seen
    train = np.flatnonzero(seen_mask)[:7057]
    test_seen = np.flatnonzero(seen_mask)[7057 : 7057 + 1764]
    test_unseen = np.flatnonzero(~seen_mask)[:2967]
    return ZSLData(
        train_x=feats[train], train_y=labels[train], test_seen_x=feats[test_seen],
        test_seen_y=labels[test_seen], test_unseen_x=feats[test_unseen],
        test_unseen_y=labels[test_unseen], prototypes=protos,
        seen_classes=np.unique(labels[train]), unseen_classes=np.arange(seen, classes),
        class_names=[str(i) for i in range(classes)], name="CUB-sized",
    )  # fmt: skip


def time_epoch(
    base: str, use_dsp: bool, data: ZSLData, steps: int, device: str, v2sm: str = "gated"
) -> tuple:
    cfg, _ = get_preset(
        base, "CUB", use_dsp=use_dsp, enhance="v2sm" if use_dsp else "none", v2sm=v2sm
    )
    torch.manual_seed(0)
    task = DSPTask(cfg, data)
    model = task.build_model().to(device)
    optimizer = task.build_optimizer(model)
    loader = task.train_dataloader()
    steps_per_epoch = len(loader)
    wanted = steps_per_epoch if steps == 0 else steps
    it = iter(loader)

    def one() -> None:
        (index,) = next(it)
        out = task.training_step(model, (index.to(device),), 0)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        task.on_step_end(model, 1)

    one()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(min(wanted, steps_per_epoch - 1)):
        one()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / min(wanted, steps_per_epoch - 1)
    return per_step * steps_per_epoch, per_step, steps_per_epoch, cfg.critic_iter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", default="clswgan,tfvaegan,free", help="comma-separated")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (0: whole epoch)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--v2sm", default="gated", help="V2SM variant of the DSP arm: gated | mlp")
    args = parser.parse_args()
    data = cub_sized()
    print(f"# {' '.join(sys.argv)}")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads {torch.get_num_threads()}, device {args.device}, V2SM {args.v2sm}")  # fmt: skip
    print("| base | critic_iter | steps/epoch | base s/epoch | +DSP s/epoch | ratio |")
    print("|---|---|---|---|---|---|")
    for base in args.bases.split(","):
        t0, _, spe, k = time_epoch(base, False, data, args.steps, args.device)
        t1, _, _, _ = time_epoch(base, True, data, args.steps, args.device, args.v2sm)
        print(f"| {base} | {k} | {spe} | {t0:.1f} | {t1:.1f} | {t1 / t0:.2f}x |", flush=True)
    if args.steps:
        print(f"# epoch times extrapolated from {args.steps} timed steps after a warm-up step")


if __name__ == "__main__":
    main()
