from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from softinfonce.cli import build_parser, main
from softinfonce.convert import to_avid_checkpoint
from softinfonce.models import create_av_model
from softinfonce.plugin import METHOD


def test_plugin_is_found_through_its_entry_point_and_reports_the_counts() -> None:
    from papers_shared.methods import discover_methods

    found = discover_methods()["softinfonce"]
    assert found is METHOD
    rows = {row[0]: row for row in METHOD.info()[0].rows}
    assert rows["full AV model"][1] == rows["full AV model"][2] == 21_286_784


def test_help_does_not_import_torch() -> None:
    """``softinfonce --help`` builds every parser without importing torch (so it answers fast)."""
    code = (
        "import sys, softinfonce.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('torch', 'torchaudio', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_flag_has_help_and_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # help lines wrap with the terminal width
    assert "(default: 256)" in text and "(default: (2.0, 3.0, 4.0))" in text
    assert "(default: 30)" in text  # epochs: AVID's recipe


def test_global_flags_work_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json", "-q"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert tables[0]["headers"][0] == "variant"


def test_train_needs_an_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data-root", str(tmp_path)]) == 1
    assert "--output-dir is required" in capsys.readouterr().err


def test_info_prints_the_spec_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "15,379,136" in out and "21,286,784" in out


@pytest.mark.parametrize(
    "command", ["info", "demo", "generate", "train", "extract", "eval", "convert"]
)
def test_every_help_ends_with_two_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    tail = text.split("examples:")[-1].strip().splitlines()
    assert len(tail) == 2 and all(
        line.strip().startswith(("softinfonce", "torchrun")) for line in tail
    )


def test_generate_with_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "generate",
        "--output-dir",
        str(tmp_path),
        "--num-clips",
        "3",
        "--duration",
        "1",
        "--num-classes",
        "2",
    ]
    assert main([*args, "--shard", "1/2"]) == 0
    assert "1 clips" in capsys.readouterr().out
    assert main(args) == 0
    assert (tmp_path / "train" / "meta.csv").exists()


def test_bad_shard_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--output-dir", "x", "--shard", "3/2"])


def test_convert_avid_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with torch.device("meta"):
        layout = create_av_model()
    fake = {
        "model": {
            f"module.{k}": torch.zeros(v.shape, dtype=v.dtype)
            for k, v in layout.state_dict().items()
        }
    }
    assert (
        len(to_avid_checkpoint(create_av_model(10, (4, 4, 4, 4), (4, 4, 4, 4), (8, 4)))["model"])
        > 0
    )
    fake["epoch"], fake["args"] = 12, argparse.Namespace(lr=0.0001, arch="av_wrapper")
    torch.save(fake, tmp_path / "avid.pth")  # as AVID's training script saves it
    assert (
        main(
            [
                "convert",
                "--checkpoint",
                str(tmp_path / "avid.pth"),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model"]["video_depth"] == 18
    again = ["convert", "--checkpoint", str(tmp_path / "avid.pth"), "--output-dir"]
    assert main([*again, str(tmp_path / "out")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*again, str(tmp_path / "out"), "--overwrite"]) == 0


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--train-features", str(tmp_path), "--test-features", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: FileNotFoundError") and len(err.strip().splitlines()) == 1
