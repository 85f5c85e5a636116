"""RIDG under the harness's run rules: a NaN batch never reaches the bank, the DomainBed
adapter, and the lazy CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from ridg import RIDG

from papers_shared.dg import hparam_space, resolve_hparams
from papers_shared.dg.domainbed import write_domainbed_stub

HP = {"cnn_width": 8, "batch_size": 4, "lr": 1e-3}


def _batches(seed, poison=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        x = torch.randn(4, 1, 16, 16, generator=g)
        out.append((x * float("nan") if poison else x, torch.tensor([0, 1, 2, 0])))
    return out


def _ridg():
    torch.manual_seed(0)
    return RIDG(
        (1, 16, 16), 3, 2, resolve_hparams(hparam_space(RIDG, "RotatedDigits"), overrides=HP)
    )


def test_a_nan_batch_leaves_bank_weights_and_optimizer_as_if_it_never_came():
    clean, poisoned = _ridg(), _ridg()
    for step in range(4):
        clean.guarded_update(_batches(step))
        assert poisoned.guarded_update(_batches(step)) is not None
        if step == 1:
            assert poisoned.guarded_update(_batches(99, poison=True)) is None
    assert torch.isfinite(poisoned.invariance.bank).all()
    for key, value in clean.state_dict().items():
        torch.testing.assert_close(poisoned.state_dict()[key], value, rtol=0, atol=0)
    assert torch.equal(poisoned.invariance.seen_counts, clean.invariance.seen_counts)
    losses = poisoned.guarded_update(_batches(5))
    assert losses is not None and all(map(lambda v: v == v, losses.values()))  # finite, not NaN


def test_plain_update_refuses_a_nan_loss_before_the_optimizer_step():
    from papers_shared.dg.algorithms import SkippedStep

    algorithm = _ridg()
    algorithm.update(_batches(0))
    weight = algorithm.classifier.weight.detach().clone()
    with pytest.raises(SkippedStep, match="non-finite loss"):
        algorithm.update(_batches(1, poison=True))
    assert torch.equal(algorithm.classifier.weight, weight)


def test_domainbed_adapter_registers_ridg_with_algorithm_only_names(tmp_path, monkeypatch):
    write_domainbed_stub(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "domainbed" or m.startswith("domainbed.")]:
        monkeypatch.delitem(sys.modules, name)
    from domainbed import algorithms, hparams_registry
    from ridg.integrations.domainbed import register

    common = set(hparams_registry.default_hparams("ERM", "PACS"))
    register(algorithms, hparams_registry)
    assert algorithms.get_algorithm_class("RIDG") is RIDG and "RIDG" in algorithms.ALGORITHMS
    hparams = hparams_registry.default_hparams("RIDG", "Debug28")
    added = set(hparams) - common
    assert added == {
        "momentum",
        "ridg_reg",
        "ridg_reduction",
        "ridg_variant",
        "ridg_closed_form",
        "ridg_double_forward",
        "ridg_min_class_count",
        "ridg_bank_dtype",
    }
    assert hparams["resnet18"] is False  # DomainBed's definition is kept, not redefined
    drawn = hparams_registry.random_hparams("RIDG", "PACS", 3)
    ours = resolve_hparams(hparam_space(RIDG, "PACS"), hparams_seed=1, trial_seed=0)
    assert 1e-2 <= drawn["ridg_reg"] <= 1e-1 and 1e-4 <= drawn["momentum"] <= 1e-1
    assert set(ours) >= added
    algorithm = RIDG((3, 28, 28), 2, 2, {**hparams, "cnn_width": 8})
    batches = [(torch.randn(4, 3, 28, 28), torch.tensor([0, 1, 0, 1])) for _ in range(2)]
    assert set(algorithm.update(batches)) == {"loss", "ce", "invariance"}
    assert algorithm.predict(torch.randn(2, 3, 28, 28)).shape == (2, 2)


def test_building_the_cli_imports_no_torchvision_or_ridg_model_code():
    code = (
        "import sys; from ridg.cli import build_parser; build_parser(); "
        "print([m for m in ('torchvision', 'ridg.algorithm', 'ridg.losses', "
        "'papers_shared.dg.trainer') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_info_matches_the_official_class_in_the_shared_flop_convention():
    from ridg.info import REFERENCE_GFLOPS, REFERENCE_PARAMS, info

    from papers_shared.counting import FLOP_CONVENTION

    models, _ = info()
    for row in models.rows:
        variant = row[0]
        assert row[2] == f"{REFERENCE_PARAMS[variant]:,} ({REFERENCE_PARAMS[variant]:,})"
        assert row[4] == f"{REFERENCE_GFLOPS[variant]:.3f} ({REFERENCE_GFLOPS[variant]:.3f})"
        assert REFERENCE_GFLOPS[variant] < float(row[3]) < 1.01 * REFERENCE_GFLOPS[variant]
    assert FLOP_CONVENTION in models.notes[0]
