"""The command line: help with examples, info, train/eval on a generated benchmark, errors."""

from __future__ import annotations

import json

import pytest
from dsp_zsl.cli import build_parser, main
from dsp_zsl.data import SyntheticZSLConfig, write_synthetic_xlsa17


@pytest.mark.parametrize("verb", ["train", "eval", "info", "demo"])
def test_help_shows_examples_and_defaults(verb, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([verb, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and out.count("dsp-zsl ") >= 2
    if verb == "train":
        assert "(default: val)" in out and "--allow-label-leak" in out


def test_train_then_eval(tmp_path, capsys):
    cfg = SyntheticZSLConfig(
        num_seen=6, num_unseen=3, num_val=2, att_dim=8, feature_dim=16, samples_per_class=12
    )
    write_synthetic_xlsa17(tmp_path, "SYN", cfg)
    common = ["--dataset", "SYN", "--data-root", str(tmp_path), "--base", "clswgan"]
    argv = ["train", *common, "--epochs", "1", "--device", "cpu", "--output-dir",
            str(tmp_path / "run"), "--config", str(tmp_path / "cfg.json"), "--json"]  # fmt: skip
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {
                "feature_dim": 16,
                "att_dim": 8,
                "hidden_dim": 32,
                "batch_size": 16,
                "critic_iter": 2,
                "syn_num": 10,
                "classifier_epochs": 2,
                "pretrain_cls_epochs": 1,
            }
        )  # fmt: skip
    )
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert "H" in out["final"]
    assert main(argv) == 1  # the run folder is refused without --resume / --overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--selection", "last"]) == 0
    assert "last epoch" in capsys.readouterr().out


def test_label_leak_needs_the_flag(tmp_path, capsys):
    argv = ["train", "--enhance", "oracle", "--output-dir", str(tmp_path / "r"), "--no-preset"]
    assert main(argv) == 1
    assert "leaks labels" in capsys.readouterr().err


def test_info_matches_released_counts(capsys):
    assert main(["info", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    for row in tables[0]["rows"]:
        for i in range(3):
            assert row[1 + 3 * i] == row[2 + 3 * i], row[0]
