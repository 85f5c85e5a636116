"""CLI: help texts with defaults and examples, a torch-free --help, one-line errors, the plugin."""

from __future__ import annotations

import subprocess
import sys

import pytest
from groupmixformer.cli import build_parser, main
from groupmixformer.plugin import METHOD


@pytest.mark.parametrize("command", ["train", "eval", "demo", "info"])
def test_every_help_shows_defaults_and_two_examples(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    out = capsys.readouterr().out
    examples = out.split("examples:")[1].strip().splitlines()
    assert len(examples) == 2 and all(
        line.strip().startswith(("groupmixformer", "torchrun")) for line in examples
    )
    if command != "info":  # info has no options of its own
        assert "(default:" in out


def test_help_does_not_import_torch():
    code = "import sys, groupmixformer.cli; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_train_flags_are_kebab_case_and_global_flags_work_after_the_verb():
    parser = build_parser()
    flags = {
        s
        for a in parser._subparsers._group_actions[0].choices["train"]._actions
        for s in a.option_strings
    }
    assert {"--data-dir", "--output-dir", "--warmup-epochs", "--precision", "--resume"} <= flags
    assert not [f for f in flags if "_" in f]
    args = parser.parse_args(["eval", "--checkpoint", "x", "--val-dir", "y", "-v", "--json"])
    assert args.verbose == 1 and args.json


def test_eval_of_missing_checkpoint_fails_with_one_line(tmp_path, capsys):
    code = main(["eval", "--checkpoint", str(tmp_path / "none.pth"), "--val-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.pth" in err[0]


def test_train_with_warmup_longer_than_the_run_fails_naming_both_flags(tmp_path, capsys):
    code = main(["train", "--data-dir", str(tmp_path), "--epochs", "3", "--warmup-epochs", "20"])
    assert code == 1
    err = capsys.readouterr().err
    assert "--warmup-epochs (20)" in err and "--epochs (3)" in err


def test_plugin_is_a_method():
    assert METHOD.name == "groupmixformer"
    assert callable(METHOD.info) and callable(METHOD.demo)


@pytest.mark.slow
def test_info_reports_the_flop_convention_and_every_variant(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "one multiply-add = one FLOP" in out
    for name in ("miny", "tiny", "small", "base", "large"):
        assert f"groupmixformer_{name}" in out
    assert "1.350G" in out  # M at 224, as fvcore counts it
