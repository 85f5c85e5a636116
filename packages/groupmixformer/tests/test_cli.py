"""CLI: help texts with examples, one-line errors, and the plugin entry."""

from __future__ import annotations

import pytest
from groupmixformer.cli import build_parser, main
from groupmixformer.plugin import METHOD


@pytest.mark.parametrize("command", ["train", "eval", "demo"])
def test_every_help_ends_with_examples(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "examples:" in capsys.readouterr().out


def test_eval_of_missing_checkpoint_fails_with_one_line(tmp_path, capsys):
    code = main(["eval", "--checkpoint", str(tmp_path / "none.pth"), "--val-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]


def test_plugin_is_a_method():
    assert METHOD.name == "groupmixformer"
    assert callable(METHOD.info) and callable(METHOD.demo)


@pytest.mark.slow
def test_quick_demo_writes_metrics_and_plot(tmp_path):
    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    assert (result.run_dir / "metrics.json").exists()
    assert (result.run_dir / "test_accuracy.png").exists()
    assert result.held == (result.ours > result.baseline)
    assert 0.1 < result.ours <= 1.0
