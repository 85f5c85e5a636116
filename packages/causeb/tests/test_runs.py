"""CausEB under the harness's run rules: projector passes as the official step, the DomainBed
adapter, eval on a run folder, and the lazy CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from causeb import CauseEB
from causeb.cli import main

from papers_shared.dg import hparam_space, resolve_hparams
from papers_shared.dg.domainbed import write_domainbed_stub

SMALL = (2, 16, 16)


def _causeb(**overrides):
    torch.manual_seed(0)
    hparams = resolve_hparams(
        hparam_space(CauseEB, "RotatedDigits"),
        overrides={"cnn_width": 8, "rds_draws": 500, **overrides},
    )
    algorithm = CauseEB(SMALL, 3, 2, hparams)
    algorithm.rds_generator = torch.Generator().manual_seed(0)
    return algorithm


def _batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(6, *SMALL, generator=g), torch.tensor([0, 1, 2] * 2)) for _ in range(2)]


def _count_projector_calls(algorithm):
    inputs = []
    algorithm.cdpl.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    return inputs


def test_projector_runs_six_times_per_step_in_the_official_order_by_default():
    algorithm = _causeb()
    assert algorithm.config.projector_passes == 6
    with torch.no_grad():  # the trunks start equal; make the domain branch differ
        for p in algorithm.featurizer_domains.parameters():
            p.add_(0.1 * torch.randn_like(p))
    inputs = _count_projector_calls(algorithm)
    algorithm.update(_batches())
    assert len(inputs) == 6
    assert algorithm.cdpl[1].num_batches_tracked.item() == 6
    # P(z~_c), P(z_c), P(z~_d), P(z_d), then P(z~_d), P(z_d) again (the G terms' mean)
    assert torch.equal(inputs[2], inputs[4]) and torch.equal(inputs[3], inputs[5])
    assert not torch.equal(inputs[0], inputs[2]) and not torch.equal(inputs[1], inputs[3])
    assert not torch.equal(inputs[0], inputs[1])  # clean and RDS views differ


def test_four_pass_option_gives_the_same_loss_but_different_projector_statistics():
    six, four = _causeb(), _causeb(projector_passes=4)
    four.load_state_dict(six.state_dict())
    projector_start = copy.deepcopy(six.cdpl.state_dict())
    for algorithm in (six, four):
        algorithm.rds_generator = torch.Generator().manual_seed(0)
    loss_six, loss_four = six.update(_batches()), four.update(_batches())
    assert loss_six["loss"] == pytest.approx(loss_four["loss"], rel=1e-6)
    assert four.cdpl[1].num_batches_tracked.item() == 4
    assert not torch.allclose(six.cdpl[1].running_mean, four.cdpl[1].running_mean)
    assert not torch.equal(projector_start["1.running_mean"], six.cdpl[1].running_mean)
    with pytest.raises(ValueError, match="projector_passes"):
        _causeb(projector_passes=5)


def test_domainbed_adapter_registers_causeb_with_algorithm_only_names(tmp_path, monkeypatch):
    write_domainbed_stub(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "domainbed" or m.startswith("domainbed.")]:
        monkeypatch.delitem(sys.modules, name)
    from causeb.integrations.domainbed import register
    from domainbed import algorithms, hparams_registry

    common = set(hparams_registry.default_hparams("ERM", "PACS"))
    register(algorithms, hparams_registry)
    for name in ("CauseEB", "CausEB"):
        assert issubclass(algorithms.get_algorithm_class(name), CauseEB)
    hparams = hparams_registry.default_hparams("CausEB", "Debug28")
    assert "resnet18" in common and hparams["resnet18"] is False  # DomainBed's, not redefined
    assert {"alpha", "beta", "mlp_width", "projector_passes"} <= set(hparams) - common
    assert hparams_registry.random_hparams("CauseEB", "PACS", 5)["mlp_depth"] in (3, 4, 5)
    algorithm = algorithms.get_algorithm_class("CausEB")(
        (3, 28, 28), 2, 2, {**hparams, "cnn_width": 8, "rds_draws": 200}
    )
    batches = [(torch.randn(4, 3, 28, 28), torch.tensor([0, 1, 0, 1])) for _ in range(2)]
    assert "loss" in algorithm.update(batches)


def test_eval_verb_reads_the_run_folder(tmp_path, capsys):
    out_dir = tmp_path / "run"
    argv = ["train", "--dataset", "DebugDomains", "--steps", "2", "--output-dir", str(out_dir)]
    argv += ["--hparams", '{"cnn_width": 8, "batch_size": 4, "rds_draws": 200}', "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(out_dir), "--json", "-q"]) == 0
    accuracies = json.loads(capsys.readouterr().out)
    assert set(accuracies) == {"0", "1", "2"} and all(0 <= a <= 1 for a in accuracies.values())
    assert main(argv) == 1  # the folder holds a run now
    assert "--resume" in capsys.readouterr().err


def test_building_the_cli_imports_no_torchvision_or_causeb_model_code():
    code = (
        "import sys; from causeb.cli import build_parser; build_parser(); "
        "print([m for m in ('torchvision', 'causeb.algorithm', 'causeb.models', "
        "'papers_shared.dg.trainer') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
