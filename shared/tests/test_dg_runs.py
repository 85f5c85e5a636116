"""The DG harness's run rules: non-finite steps, run folders, resume, eval of a run folder,
the DomainBed adapter and the CLI surface (flags, aliases, shard errors, lazy imports)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from papers_shared.checkpoint import CheckpointError
from papers_shared.dg import (
    DATASETS,
    ERM,
    NonFiniteLossError,
    RunFolderError,
    TrainConfig,
    hparam_space,
    resolve_hparams,
    train,
    train_algorithm,
)
from papers_shared.dg.cli import DATASET_NAMES, add_dg_commands
from papers_shared.dg.domainbed import (
    algorithm_only_hparams,
    register_with_domainbed,
    write_domainbed_stub,
)
from papers_shared.dg.evaluate import evaluate_checkpoint
from papers_shared.dg.hparams import HParam

TINY = {"cnn_width": 8, "batch_size": 4}


def tiny(output_dir=None, **overrides):
    fields = {
        "dataset": "DebugDomains",
        "test_envs": [0],
        "steps": 6,
        "checkpoint_freq": 2,
        "output_dir": str(output_dir) if output_dir else None,
        "hparams": TINY,
        "progress": False,
        "device": "cpu",
    }
    return TrainConfig(**{**fields, **overrides})


class BankERM(ERM):
    """ERM with a buffer changed by every forward (like a memory bank or BatchNorm statistics)
    and a hook that poisons chosen steps' inputs with NaN."""

    poison_steps: frozenset[int] = frozenset()  # tests set it with monkeypatch

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("bank", torch.zeros(3))
        self.calls = 0

    def update(self, minibatches, unlabeled=None):
        step, self.calls = self.calls, self.calls + 1
        if step in self.poison_steps:
            minibatches = [(torch.full_like(x, float("nan")), y) for x, y in minibatches]
        x = torch.cat([x for x, _ in minibatches])
        self.bank += x.mean()  # touched before the loss, as RIDG's bank update
        return super().update(minibatches, unlabeled)


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 28, 28, generator=g), torch.tensor([0, 1, 0, 1])) for _ in range(2)]


def test_guarded_update_skips_a_nan_step_without_touching_any_state():
    torch.manual_seed(0)
    hparams = resolve_hparams(hparam_space(ERM, "DebugDomains"), overrides=TINY)
    algorithm = BankERM((3, 28, 28), 2, 2, hparams)
    algorithm.update(_batches(0))  # optimizer state exists
    state = {k: v.clone() for k, v in algorithm.state_dict().items()}
    adam = {k: v.clone() for s in algorithm.optimizer.state.values() for k, v in s.items()}
    poisoned = [(torch.full_like(x, float("nan")), y) for x, y in _batches(1)]
    assert algorithm.guarded_update(poisoned) is None
    for key, value in algorithm.state_dict().items():
        assert torch.equal(value, state[key]), key  # parameters and the bank buffer
    after = {k: v for s in algorithm.optimizer.state.values() for k, v in s.items()}
    assert all(torch.equal(after[k], adam[k]) for k in adam)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in algorithm.parameters())
    assert algorithm.guarded_update(_batches(2)) is not None
    assert torch.isfinite(algorithm.bank).all()


def test_trainer_counts_skipped_steps_and_stops_after_max_in_a_row(monkeypatch):
    monkeypatch.setattr(BankERM, "poison_steps", {1, 4})
    records, algorithm = train_algorithm(tiny(), BankERM)
    assert sum(r["nonfinite_skipped"] for r in records) == 2
    assert all(torch.isfinite(p).all() for p in algorithm.parameters())
    assert torch.isfinite(algorithm.bank).all()
    monkeypatch.setattr(BankERM, "poison_steps", {2, 3, 4})
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        train_algorithm(tiny(), BankERM)
    records, _ = train_algorithm(tiny(max_nonfinite=4), BankERM)  # configurable
    assert sum(r["nonfinite_skipped"] for r in records) == 3


def test_a_folder_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    train(tiny(run, steps=2))
    with pytest.raises(RunFolderError, match="--resume .* --overwrite"):
        train(tiny(run, steps=2))
    first = (run / "results.jsonl").read_text()
    records = train(tiny(run, steps=2, overwrite=True))
    assert (run / "results.jsonl").read_text().count("\n") == len(records) == 2
    assert json.loads(first.splitlines()[0])["step"] == 0
    with pytest.raises(ValueError, match="exclude"):
        tiny(run, resume=True, overwrite=True)


def test_resume_continues_exactly_and_keeps_the_records(tmp_path):
    whole, _ = train_algorithm(tiny(tmp_path / "whole"))
    train(tiny(tmp_path / "part", steps=3))  # an interrupted run: state saved at step 2
    resumed, algorithm = train_algorithm(tiny(tmp_path / "part", resume=True))
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] == [0, 2, 4, 5]
    for a, b in zip(resumed, whole, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["env0_in_acc"] == b["env0_in_acc"]
    lines = (tmp_path / "part" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 2, 4, 5]
    reference = torch.load(tmp_path / "whole" / "model.pkl", weights_only=True)["model_dict"]
    for key, value in algorithm.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=1e-6)


def test_resume_with_nothing_left_says_so_and_changes_nothing(tmp_path, caplog):
    run = tmp_path / "run"
    records = train(tiny(run, steps=3))
    before = (run / "results.jsonl").read_text()
    with caplog.at_level("INFO", logger="papers_shared.dg.trainer"):
        again = train(tiny(run, steps=3, resume=True))
    assert "nothing to do" in caplog.text
    assert again == json.loads("[" + ",".join(before.splitlines()) + "]")
    assert len(again) == len(records) and (run / "results.jsonl").read_text() == before


def test_resume_refuses_changed_settings(tmp_path):
    run = tmp_path / "run"
    train(tiny(run, steps=3))
    with pytest.raises(RunFolderError, match="hparams"):
        train(tiny(run, steps=6, resume=True, hparams={**TINY, "lr": 0.5}))


def test_eval_accepts_the_run_folder_and_the_model_file(tmp_path):
    run = tmp_path / "run"
    train(tiny(run, steps=2))
    from_folder = evaluate_checkpoint(run, device="cpu")
    assert set(from_folder) == {"0", "1", "2"}
    assert from_folder == evaluate_checkpoint(run / "model.pkl", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="without model.pkl"):
        evaluate_checkpoint(tmp_path / "empty")
    (tmp_path / "junk.pkl").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.pkl .*(not a readable|expected a) torch"):
        evaluate_checkpoint(tmp_path / "junk.pkl")


def _parser():
    import argparse

    parser = argparse.ArgumentParser(prog="x")
    add_dg_commands(parser.add_subparsers(dest="command"), "x", "ERM")
    return parser


def test_kebab_case_flags_with_domainbed_aliases_and_defaults_in_help(capsys):
    parser = _parser()
    kebab = parser.parse_args(["train", "--output-dir", "o", "--test-envs", "1", "2"])
    snake = parser.parse_args(["train", "--output_dir", "o", "--test_envs", "1", "2"])
    assert vars(kebab) == vars(snake) and kebab.test_envs == [1, 2]
    assert parser.parse_args(["train", "-v"]).verbose == 1  # after the subcommand
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--output-dir OUTPUT_DIR, --output_dir OUTPUT_DIR" in help_text
    assert "(default: train_output)" in help_text and "(default: auto)" in help_text
    assert "--amp" not in help_text  # deprecated alias, hidden


def test_bad_shard_gives_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["sweep", "--output-dir", "o", "--shard", "4/4"])
    err = capsys.readouterr().err
    assert "0 <= i < n, got 4/4" in err and "0-based" in err
    assert _parser().parse_args(["sweep", "--output-dir", "o", "--shard", "3/4"]).shard == (3, 4)


def test_cli_dataset_names_match_the_registry():
    assert sorted(DATASET_NAMES) == sorted(DATASETS)


def test_building_the_dg_cli_imports_no_harness_module():
    code = (
        "import sys, argparse; from papers_shared.dg.cli import add_dg_commands; "
        "p = argparse.ArgumentParser(); add_dg_commands(p.add_subparsers(), 'x', 'ERM'); "
        "print(sorted(m for m in sys.modules if m.startswith(('torchvision', "
        "'papers_shared.dg.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['papers_shared.dg.cli']"


def _extra(dataset):
    return {
        "resnet18": HParam(True, lambda r: True),  # common name: DomainBed defines it
        "my_weight": HParam(0.5, lambda r: 10 ** r.uniform(-2, 0)),
    }


def test_domainbed_adapter_adds_the_class_and_only_algorithm_names(tmp_path, monkeypatch):
    write_domainbed_stub(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "domainbed" or m.startswith("domainbed.")]:
        monkeypatch.delitem(sys.modules, name)
    from domainbed import algorithms, hparams_registry  # the stand-in written above

    class MyERM(ERM):
        pass

    register_with_domainbed(algorithms, hparams_registry, {"MyERM": MyERM}, _extra)
    register_with_domainbed(algorithms, hparams_registry, {"MyERM": MyERM}, _extra)  # no-op
    assert algorithms.get_algorithm_class("MyERM") is MyERM
    assert algorithms.ALGORITHMS.count("MyERM") == 1
    defaults = hparams_registry.default_hparams("MyERM", "PACS")
    assert defaults["my_weight"] == 0.5 and defaults["resnet18"] is False  # DomainBed's own
    assert "my_weight" not in hparams_registry.default_hparams("ERM", "PACS")
    drawn = hparams_registry.random_hparams("MyERM", "PACS", 7)
    assert drawn["lr"] == hparams_registry.random_hparams("ERM", "PACS", 7)["lr"]
    import numpy as np

    from papers_shared.seeding import seed_hash

    expected = 10 ** np.random.RandomState(seed_hash(7, "my_weight")).uniform(-2, 0)
    assert drawn["my_weight"] == expected
    assert set(algorithm_only_hparams(_extra, "PACS")) == {"my_weight"}
    model = algorithms.get_algorithm_class("MyERM")((3, 28, 28), 2, 2, defaults)
    assert model.predict(torch.randn(2, 3, 28, 28)).shape == (2, 2)

    class Other(ERM):
        pass

    with pytest.raises(ValueError, match="already defines"):
        register_with_domainbed(algorithms, hparams_registry, {"MyERM": Other}, _extra)


def test_domainbed_backbone_switches_we_lack_are_refused():
    hparams = resolve_hparams(hparam_space(ERM, "PACS"), overrides={"resnet_pretrained": False})
    with pytest.raises(ValueError, match="vit"):
        ERM((3, 72, 72), 2, 2, {**hparams, "vit": True})


def test_checkpoint_with_a_namespace_args_loads_without_trusting_code(tmp_path):
    import argparse

    from papers_shared.dg import load_algorithm

    run = tmp_path / "run"
    train(tiny(run, steps=2))
    checkpoint = torch.load(run / "model.pkl", weights_only=True)
    checkpoint["args"] = argparse.Namespace(**checkpoint["args"])  # as some DomainBed forks save
    torch.save(checkpoint, tmp_path / "fork.pkl")
    algorithm = load_algorithm(tmp_path / "fork.pkl")
    assert isinstance(algorithm, ERM)
    assert evaluate_checkpoint(tmp_path / "fork.pkl", device="cpu") == evaluate_checkpoint(run)


def test_lazy_package_namespace_resolves_every_public_name():
    import papers_shared.dg as dg

    assert sorted(dg.__all__) == sorted(dg._WHERE) and len(set(dg.__all__)) == len(dg.__all__)
    assert all(getattr(dg, name) is not None for name in dg.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dg.nope  # noqa: B018
