"""``dyt demo``: the paper's claim in miniature on scikit-learn's handwritten digits.

Claim (the paper's VTAB-1K comparison, ViT-B/16): DyT at r=0.5 needs clearly fewer inference FLOPs
than AdaptFormer (12.54 vs 17.61 GFLOPs) and is at least as accurate (group mean 77.14 vs 74.75).

1. Pre-train a small ViT on digits 0-4 (the stand-in for the IN-21K backbone; no downloads here),
   once, with the ViT paper's IN-21K recipe (Dosovitskiy et al. 2021, Table 3: Adam, lr 1e-3,
   weight decay 0.03, linear decay).
2. Per seed, adapt it to digits 5-9 with full fine-tuning, AdaptFormer (the same adapters, every
   token through the MLP) and DyT at r=0.5 (full DyT objective, real skipping at inference). All
   three use the paper's VTAB-1K recipe, ``dyt.get_train_preset("vtab")``: AdamW lr 1e-3,
   weight decay 1e-4, batch 64, 10% warm-up then half-cosine to 1e-5, bottleneck 8, adapter
   scale 1, alpha 2, tau 5 (the paper's VTAB-1K setting). Seeds change the adaptation (new
   adapters and head, data order, Gumbel noise), as the paper's three runs on one backbone.
3. Two verdicts from ``papers_shared.verdict.judge_claim`` over the seeds, with margins fixed
   here before anything runs: FLOPs (DyT must save more than ``FLOPS_MARGIN`` percent of
   AdaptFormer's eval FLOPs) and accuracy (DyT must beat AdaptFormer by more than
   ``ACCURACY_MARGIN`` points of test accuracy).
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from dyt.config import TrainConfig, get_train_preset
from dyt.flops import ViTDims, dyt_flops
from dyt.losses import DyTLoss
from dyt.models.dispatch import dispatch_mode, forward_dyt
from dyt.models.dyt_vit import convert_vit
from dyt.train import cosine_lr
from papers_shared.data import load_digits
from papers_shared.methods import DemoResult, Table
from papers_shared.progress import progress_bar
from papers_shared.runs import make_run_dir, plot_curves, write_metrics
from papers_shared.seeding import seed_everything
from papers_shared.verdict import judge_claim

__all__ = ["demo", "DemoSettings", "FLOPS_MARGIN", "ACCURACY_MARGIN", "CLAIM"]

logger = logging.getLogger(__name__)
CLAIM = (
    "DyT (r=0.5) needs clearly fewer inference FLOPs than AdaptFormer and is at least as "
    "accurate (paper, VTAB-1K: 12.54 vs 17.61 GFLOPs, group mean 77.14 vs 74.75)"
)
FLOPS_MARGIN = 20.0
"""DyT must save more than this many percent of AdaptFormer's eval FLOPs (paper: 29%)."""
ACCURACY_MARGIN = 1.0
"""DyT must beat AdaptFormer by more than this many points of test accuracy (paper: 2.4)."""
# The ViT paper's IN-21K pre-training recipe (Dosovitskiy et al. 2021, Table 3).
PRETRAIN_LR, PRETRAIN_WEIGHT_DECAY = 1e-3, 0.03
ARMS = {"full": "Full fine-tuning", "adaptformer": "AdaptFormer (DyT r=1)", "dyt": "DyT r=0.5"}


@dataclass(frozen=True)
class DemoSettings:
    """The miniature's size and length (the recipe itself is the paper's, see the module doc)."""

    img_size: int = 16
    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    pretrain_epochs: int = 40
    adapt_epochs: int = 100
    """The paper's VTAB-1K length (100 epochs)."""
    num_seeds: int = 3


QUICK = DemoSettings(pretrain_epochs=15, adapt_epochs=30, num_seeds=1)
FULL = DemoSettings()


def _digits(img_size: int, seed: int):
    images, labels = load_digits(img_size)
    images = (images - 0.5) / 0.5  # mean = std = 0.5 as in the paper
    images = images.expand(-1, 3, -1, -1).contiguous()
    generator = torch.Generator().manual_seed(seed)
    source = labels < 5
    target = ~source
    src_x, src_y = images[source], labels[source]
    tgt_x, tgt_y = images[target], labels[target] - 5
    order = torch.randperm(len(tgt_y), generator=generator)
    tgt_x, tgt_y = tgt_x[order], tgt_y[order]
    cut = int(0.6 * len(tgt_y))
    return (src_x, src_y), (tgt_x[:cut], tgt_y[:cut]), (tgt_x[cut:], tgt_y[cut:])


Split = tuple[torch.Tensor, torch.Tensor]


def _batches(x: torch.Tensor, y: torch.Tensor, batch: int, generator: torch.Generator):
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), batch):
        idx = order[start : start + batch]
        yield x[idx], y[idx]


def _pretrain(settings: DemoSettings, data: Split, batch: int, progress: bool | None) -> Any:
    model = timm.create_model(
        "vit_base_patch16_224", pretrained=False, img_size=settings.img_size,
        patch_size=settings.patch_size, embed_dim=settings.embed_dim, depth=settings.depth,
        num_heads=settings.num_heads, num_classes=5,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=PRETRAIN_LR, weight_decay=PRETRAIN_WEIGHT_DECAY
    )
    steps = settings.pretrain_epochs * -(-len(data[1]) // batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)  # linear
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in progress_bar(range(settings.pretrain_epochs), enabled=progress, desc="pre-train"):
        for images, labels in _batches(*data, batch, generator):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return model


def _logits(model: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "adaptformer":  # every token runs the MLP
        with dispatch_mode(model, complete=True):
            return model(x)
    return model(x)


def _evaluate(model: nn.Module, kind: str, x: torch.Tensor, y: torch.Tensor, dims: ViTDims):
    """(test accuracy, eval FLOPs per image, MLP activation) under the real eval masks."""
    model.eval()
    with torch.no_grad():
        if kind == "dyt":
            logits, aux = forward_dyt(model, x)
            active = aux["token_select"].squeeze(-1).sum(-1)  # (B, L)
            flops = statistics.fmean(
                dyt_flops(dims, get_train_preset("vtab").dyt.bottleneck, row).total
                for row in active
            )
            activation = float(active.mean() / dims.num_patches)
        else:
            logits = _logits(model, kind, x)
            bottleneck = None if kind == "full" else get_train_preset("vtab").dyt.bottleneck
            flops, activation = dyt_flops(dims, bottleneck).total, 1.0
    return float((logits.argmax(-1) == y).float().mean()), flops, activation


def _throughputs(models: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Images/s per model: best of ``repeats`` eval passes, interleaved so load spikes hit all."""
    best = dict.fromkeys(models, float("inf"))
    with torch.no_grad():
        for round_index in range(repeats + 1):
            for kind, model in models.items():
                model.eval()
                started = time.perf_counter()
                _logits(model, kind, x)
                if round_index:  # round 0 is the warm-up
                    best[kind] = min(best[kind], time.perf_counter() - started)
    return {kind: len(x) / seconds for kind, seconds in best.items()}


def _adapt(kind: str, backbone: nn.Module, recipe: TrainConfig, epochs: int, train: Split,
           seed: int, progress: bool | None) -> tuple[Any, list[float]]:  # fmt: skip
    torch.manual_seed(seed)
    model: Any = copy.deepcopy(backbone)
    if kind == "full":
        model.reset_classifier(5)
        params = list(model.parameters())
    else:
        dyt_config = recipe.dyt if kind == "dyt" else replace(recipe.dyt, rate=1.0)
        model = convert_vit(model, dyt_config, num_classes=5, head_init_std=recipe.head_init_std)
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(train[1]) // recipe.batch_size)
    total = epochs * steps_per_epoch
    warmup = round(total * recipe.warmup_epochs / recipe.epochs)  # the paper's 10% warm-up
    criterion = DyTLoss(rate=recipe.dyt.rate, alpha=recipe.alpha)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    step = 0
    model.train()
    for _ in progress_bar(range(epochs), enabled=progress, desc=f"{kind} seed {seed}"):
        total_loss, count = 0.0, 0
        for images, labels in _batches(*train, recipe.batch_size, generator):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, warmup, recipe.lr, recipe.min_lr)
            if kind == "dyt":
                logits, aux = forward_dyt(model, images)
                complete = forward_dyt(model, images, complete=True)[0]
                loss = criterion(logits, labels, aux["token_select"], complete).total
            else:
                loss = F.cross_entropy(_logits(model, kind, images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach())
            count += 1
            step += 1
        losses.append(total_loss / count)
    return model, losses


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def demo(
    *, full: bool = False, output_root: Path = Path("runs"), progress: bool | None = None,
    seed: int = 0,
) -> DemoResult:  # fmt: skip
    """Run the miniature (quick: 1 seed, about a minute; full: 3 seeds, a few minutes on 2 cores)
    and write metrics and loss curves to a run folder."""
    settings = FULL if full else QUICK
    recipe = get_train_preset("vtab")
    seed_everything(seed)
    source, train, test = _digits(settings.img_size, seed)
    backbone = _pretrain(settings, source, recipe.batch_size, progress)
    dims = ViTDims(**{**ViTDims.from_model(backbone).__dict__, "num_classes": 5})
    seeds = [seed + i for i in range(settings.num_seeds)]
    results: dict[str, dict[str, list[float]]] = {
        kind: {"accuracy": [], "flops": [], "activation": [], "throughput": []} for kind in ARMS
    }
    curves: dict[str, list[float]] = {}
    trainable: dict[str, int] = {}
    for run_seed in seeds:
        models = {}
        for kind, label in ARMS.items():
            model, losses = _adapt(
                kind, backbone, recipe, settings.adapt_epochs, train, run_seed, progress
            )
            models[kind] = model
            curves[f"{label} (seed {run_seed})"] = losses
            trainable[kind] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            accuracy, flops, activation = _evaluate(model, kind, *test, dims)
            results[kind]["accuracy"].append(accuracy)
            results[kind]["flops"].append(flops)
            results[kind]["activation"].append(activation)
        speeds = _throughputs(models, test[0], repeats=5)
        for kind in ARMS:
            results[kind]["throughput"].append(speeds[kind])
    adapt_flops = results["adaptformer"]["flops"]
    dyt_share = [100 * d / a for d, a in zip(results["dyt"]["flops"], adapt_flops)]
    verdicts = [
        judge_claim(
            dyt_share, [100.0] * len(seeds), FLOPS_MARGIN, higher_is_better=False,
            method_name="DyT", baseline_name="AdaptFormer",
            metric="eval FLOPs (% of AdaptFormer's)", quick=not full,
        ),
        judge_claim(
            [100 * a for a in results["dyt"]["accuracy"]],
            [100 * a for a in results["adaptformer"]["accuracy"]], ACCURACY_MARGIN,
            method_name="DyT", baseline_name="AdaptFormer", metric="test accuracy (%)",
            quick=not full,
        ),
    ]  # fmt: skip
    rows = [
        [
            ARMS[kind], f"{trainable[kind]:,}", _mean_std(results[kind]["accuracy"], 100),
            _mean_std(results[kind]["flops"], 1e-6, 2), _mean_std(results[kind]["activation"], 1, 2),
            f"{statistics.fmean(results[kind]['throughput']):,.0f}",
        ]
        for kind in ARMS
    ]  # fmt: skip
    table = Table(
        title=f"DyT demo: pre-train on digits 0-4, adapt to digits 5-9 ({len(seeds)} seed(s), "
        "mean +- std)",
        headers=["method", "trainable params", "test acc %", "eval MFLOPs/img", "MLP activation",
                 "throughput img/s"],
        rows=rows,
        notes=[
            f"Margins (fixed before the run): DyT saves > {FLOPS_MARGIN:g}% of AdaptFormer's "
            f"eval FLOPs; DyT beats AdaptFormer by > {ACCURACY_MARGIN:g} accuracy points. A "
            "claim holds when the mean paired difference over >= 3 seeds exceeds its margin and "
            "twice its standard error.",
            "Recipe: the paper's VTAB-1K settings for every arm (AdamW lr 1e-3, wd 1e-4, batch 64, "
            f"{settings.adapt_epochs} epochs, 10% warm-up, half-cosine; d=8, s=1, alpha=2, tau=5).",
            f"FLOPs from the real eval masks (one multiply-add = one FLOP); throughput = best of 5 "
            f"eval passes over the {len(test[1])} test images on this CPU "
            f"({torch.get_num_threads()} thread(s)), mean over seeds.",
        ],
    )  # fmt: skip
    run_dir = make_run_dir("dyt-tuning", output_root)
    details = {
        "settings": asdict(settings), "seeds": seeds, "results": results,
        "dyt_flops_share_percent": dyt_share, "verdicts": [v.to_dict() for v in verdicts],
        "margins": {"flops_percent": FLOPS_MARGIN, "accuracy_points": ACCURACY_MARGIN},
    }  # fmt: skip
    write_metrics(run_dir, details)
    plot_curves(curves, run_dir / "train_loss.png", title="adaptation loss", xlabel="epoch",
                ylabel="training loss")  # fmt: skip
    return DemoResult(
        package="dyt-tuning",
        claim=CLAIM,
        metric="eval FLOPs and test accuracy, DyT vs AdaptFormer",
        table=table,
        run_dir=run_dir,
        details=details,
        verdicts=verdicts,
    )
