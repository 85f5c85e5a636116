"""Metrics as the ZSL literature reports them and the final-classifier protocol.

* per-class mean top-1: acc(Y) = (1/|Y|) sum_{c in Y} (#correct in c / #test samples of c);
* GZSL: U = acc over the unseen classes on test_unseen, S = acc over the seen classes on
  test_seen (prediction over all C classes), H = 2 U S / (U + S) (0 when U + S = 0);
* CZSL: Acc = per-class accuracy on test_unseen with a classifier over the unseen classes only.

Accuracies are in percent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dsp_zsl.models.bases import LinearLogSoftmax

__all__ = [
    "ClassifierData",
    "gzsl_metrics",
    "harmonic_mean",
    "per_class_accuracy",
    "run_final_classifier",
    "select_epoch",
]

logger = logging.getLogger(__name__)


def per_class_accuracy(
    pred: torch.Tensor, target: torch.Tensor, classes: torch.Tensor | Sequence[int]
) -> float:
    """Mean over ``classes`` (those with at least one sample in ``target``) of the per-class
    top-1 accuracy, in percent. pred, target: (N,) class ids."""
    pred, target = torch.as_tensor(pred).reshape(-1), torch.as_tensor(target).reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same length, got {pred.shape} and {target.shape}"
        )
    accs = []
    for c in torch.as_tensor(classes).reshape(-1).tolist():
        mask = target == c
        count = int(mask.sum())
        if count:
            accs.append(float((pred[mask] == c).sum()) / count)
    if not accs:
        raise ValueError("none of the given classes has a sample in target")
    return 100.0 * sum(accs) / len(accs)


def harmonic_mean(u: float, s: float) -> float:
    """H = 2 U S / (U + S); 0 when U + S = 0."""
    return 0.0 if u + s == 0 else 2.0 * u * s / (u + s)


def gzsl_metrics(
    pred_seen: torch.Tensor,
    y_seen: torch.Tensor,
    pred_unseen: torch.Tensor,
    y_unseen: torch.Tensor,
    seen_classes: torch.Tensor,
    unseen_classes: torch.Tensor,
) -> dict[str, float]:
    """``{"U", "S", "H"}`` from global-label predictions on test_seen and test_unseen."""
    u = per_class_accuracy(pred_unseen, y_unseen, unseen_classes)
    s = per_class_accuracy(pred_seen, y_seen, seen_classes)
    return {"U": u, "S": s, "H": harmonic_mean(u, s)}


@dataclass
class ClassifierData:
    """Features (already enhanced) for the final classifier; labels are global class ids.

    ``val_*`` never come from the test split. Empty tensors mark a missing part.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_seen_x: torch.Tensor
    val_seen_y: torch.Tensor
    val_unseen_x: torch.Tensor
    val_unseen_y: torch.Tensor
    test_seen_x: torch.Tensor
    test_seen_y: torch.Tensor
    test_unseen_x: torch.Tensor
    test_unseen_y: torch.Tensor
    seen_classes: torch.Tensor
    unseen_classes: torch.Tensor
    num_classes: int


def _predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])


def run_final_classifier(
    data: ClassifierData,
    *,
    gzsl: bool,
    lr: float,
    epochs: int,
    batch_size: int,
    beta1: float = 0.5,
    generator: torch.Generator | None = None,
) -> list[dict[str, float]]:
    """Train Linear + LogSoftmax (NLL, Adam(lr, (beta1, 0.999))) and measure after every epoch.

    GZSL: over all ``num_classes`` (global labels); records hold ``U, S, H`` (test) and
    ``val_U, val_S, val_H``. CZSL: over the unseen classes only (labels remapped to 0..U-1 in
    sorted order); records hold ``Acc`` and ``val_Acc``. Missing parts give NaN.
    """
    device = data.train_x.device
    if gzsl:
        num_out, remap = data.num_classes, None
    else:
        num_out = len(data.unseen_classes)
        remap = torch.full((data.num_classes,), -1, dtype=torch.long, device=device)
        remap[data.unseen_classes] = torch.arange(num_out, device=device)
    train_y = data.train_y if remap is None else remap[data.train_y]
    if (train_y < 0).any():
        raise ValueError("CZSL training data must hold unseen classes only")
    model = LinearLogSoftmax(data.train_x.shape[1], num_out).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(beta1, 0.999))
    n = data.train_x.shape[0]
    records: list[dict[str, float]] = []
    nan = float("nan")
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = F.nll_loss(model(data.train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        rec: dict[str, float] = {"classifier_epoch": float(epoch + 1)}
        with torch.no_grad():
            if gzsl:
                for prefix, sx, sy, ux, uy in (
                    (
                        "",
                        data.test_seen_x,
                        data.test_seen_y,
                        data.test_unseen_x,
                        data.test_unseen_y,
                    ),
                    (
                        "val_",
                        data.val_seen_x,
                        data.val_seen_y,
                        data.val_unseen_x,
                        data.val_unseen_y,
                    ),
                ):
                    u = (
                        per_class_accuracy(_predict(model, ux), uy, data.unseen_classes)
                        if uy.numel()
                        else nan
                    )
                    s = (
                        per_class_accuracy(_predict(model, sx), sy, data.seen_classes)
                        if sy.numel()
                        else nan
                    )
                    h = harmonic_mean(u, s) if u == u and s == s else nan
                    rec.update({f"{prefix}U": u, f"{prefix}S": s, f"{prefix}H": h})
            else:
                assert remap is not None
                for prefix, ux, uy in (
                    ("", data.test_unseen_x, data.test_unseen_y),
                    ("val_", data.val_unseen_x, data.val_unseen_y),
                ):
                    rec[f"{prefix}Acc"] = (
                        per_class_accuracy(_predict(model, ux), remap[uy], torch.arange(num_out))
                        if uy.numel()
                        else nan
                    )
        records.append(rec)
    return records


def select_epoch(records: list[dict[str, float]], selection: str, key: str) -> dict[str, float]:
    """The record chosen by ``selection``: ``val`` (best ``val_<key>``), ``test`` (best ``key``
    on the test split: the baselines' protocol, optimistic) or ``last``."""
    if not records:
        raise ValueError("no classifier epochs to select from")
    if selection == "last":
        return dict(records[-1])
    score_key = key if selection == "test" else f"val_{key}"
    if selection not in ("val", "test"):
        raise ValueError(f"selection must be 'val', 'test' or 'last', got {selection!r}")
    scores = [r.get(score_key, float("nan")) for r in records]
    if all(s != s for s in scores):
        raise ValueError(f"selection={selection!r} needs {score_key}, which was not measured")
    # ties go to the later epoch (an all-zero validation score keeps the trained classifier)
    best = max(
        range(len(records)), key=lambda i: (scores[i] if scores[i] == scores[i] else -1.0, i)
    )
    return dict(records[best])
