from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from softinfonce.cli import build_parser, main
from softinfonce.convert import to_avid_checkpoint
from softinfonce.models import create_av_model
from softinfonce.plugin import METHOD


def test_plugin_method_is_exposed() -> None:
    assert METHOD.name == "softinfonce"


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
    torch.save(fake, tmp_path / "avid.pth")
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


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--train-features", str(tmp_path), "--test-features", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: FileNotFoundError") and len(err.strip().splitlines()) == 1
