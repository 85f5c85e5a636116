"""Per-class accuracy, U/S/H and epoch selection against hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from dsp_zsl.evaluate import gzsl_metrics, harmonic_mean, per_class_accuracy, select_epoch


def test_per_class_not_per_sample():
    # class 0: 3 of 4 right; class 1: 0 of 1 right -> per class (0.75 + 0) / 2 = 37.5
    target = torch.tensor([0, 0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 1, 0])
    assert per_class_accuracy(pred, target, [0, 1]) == pytest.approx(37.5)
    per_sample = 100 * (pred == target).float().mean().item()
    assert per_sample == pytest.approx(60.0)


def test_gzsl_u_s_h():
    seen, unseen = torch.tensor([0, 1]), torch.tensor([2])
    # test_seen: class 0 2/2, class 1 1/2 -> S = 75; test_unseen: 1/4 -> U = 25
    m = gzsl_metrics(
        torch.tensor([0, 0, 1, 2]), torch.tensor([0, 0, 1, 1]),
        torch.tensor([2, 0, 1, 0]), torch.tensor([2, 2, 2, 2]),
        seen, unseen,
    )  # fmt: skip
    assert m["S"] == pytest.approx(75.0) and m["U"] == pytest.approx(25.0)
    assert m["H"] == pytest.approx(2 * 75 * 25 / 100)


def test_h_zero_when_both_zero():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.0, 50.0) == 0.0


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="same length"):
        per_class_accuracy(torch.tensor([0, 1]), torch.tensor([0]), [0])


def test_selection_val_test_last():
    recs = [
        {"H": 10.0, "val_H": 30.0},
        {"H": 40.0, "val_H": 20.0},
        {"H": 20.0, "val_H": 10.0},
    ]
    assert select_epoch(recs, "val", "H")["H"] == 10.0
    assert select_epoch(recs, "test", "H")["H"] == 40.0
    assert select_epoch(recs, "last", "H")["H"] == 20.0
    with pytest.raises(ValueError, match="val_H"):
        select_epoch([{"H": 1.0, "val_H": math.nan}], "val", "H")
