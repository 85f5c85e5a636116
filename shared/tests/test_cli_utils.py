import argparse
import dataclasses
import json

import pytest

from papers_shared.cli_utils import (
    add_command,
    add_run_flags,
    add_trainer_flags,
    build_package_parser,
    config_from_args,
    flag_names,
    format_demo_result,
    parse_and_run,
    parse_args,
    trainer_config_from_args,
)
from papers_shared.methods import DemoResult, Method, Table
from papers_shared.trainer import TrainerConfig
from papers_shared.verdict import judge_claim


def _demo(**kwargs):
    arms = judge_claim([3.0, 4.0, 5.0], [1.0, 1.5, 1.0], margin=1.0, method_name="ours",
                       baseline_name="base", metric="acc")  # fmt: skip
    return DemoResult("fake", "ours beats base", "acc", table=Table(["a"], [[1]]), verdicts=[arms])


METHOD = Method("fake", "A fake paper", lambda: [Table(["variant"], [["tiny"]])], _demo)


@dataclasses.dataclass
class PackageConfig:
    lr: float = 0.01
    width: int = 3
    name: str = "base"

    @classmethod
    def from_dict(cls, data):
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown PackageConfig field(s) {unknown}")
        return cls(**data)


def _parser(dg_aliases=False):
    parser, sub = build_package_parser(METHOD, "Fake.", ["fake info", "fake demo"])
    train = add_command(
        sub,
        "train",
        help="train the model",
        examples=["fake train --output-dir a", "fake train -h"],
    )
    add_run_flags(train, dg_aliases=dg_aliases)
    add_trainer_flags(train, epochs=5)
    train.add_argument("--lr", type=float, default=0.1, help="learning rate")
    train.add_argument("--width", type=int, default=3, help="width")
    train.set_defaults(handler=lambda args: 0)
    return parser, train


def test_subcommand_help_shows_defaults_and_examples():
    _, train = _parser()
    text = train.format_help()
    assert "(default: 5)" in text and "(default: 0.1)" in text and "(default: auto)" in text
    assert "examples:\n  fake train --output-dir a" in text


def test_global_flags_work_after_the_subcommand():
    parser, _ = _parser()
    args = parse_args(parser, ["train", "-v", "--json"])
    assert args.verbose == 1 and args.json is True
    args = parse_args(parser, ["-v", "train"])
    assert args.verbose == 1 and args.json is False
    assert parse_args(parser, ["info", "-q"]).quiet is True


def test_add_command_needs_examples():
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="examples"):
        add_command(parser.add_subparsers(), "x", help="x", examples=[])


def test_dg_aliases_accept_snake_case():
    parser, _ = _parser(dg_aliases=True)
    assert str(parse_args(parser, ["train", "--output_dir", "o"]).output_dir) == "o"
    assert flag_names("--data-dir", True) == ["--data-dir", "--data_dir"]
    assert flag_names("--data-dir") == ["--data-dir"]
    with pytest.raises(SystemExit):
        _parser(dg_aliases=False)[0].parse_args(["train", "--output_dir", "o"])


def test_trainer_config_from_flags(tmp_path):
    parser, _ = _parser()
    args = parse_args(
        parser,
        ["train", "--output-dir", str(tmp_path), "--precision", "bf16", "--max-steps", "7",
         "--clip-grad-norm", "1.5", "--resume", "--no-progress", "--device", "cpu"],
    )  # fmt: skip
    cfg = trainer_config_from_args(args)
    assert cfg == TrainerConfig(
        output_dir=str(tmp_path), epochs=5, max_steps=7, precision="bf16", clip_grad_norm=1.5,
        resume=True, progress=False, device="cpu",
    )  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--resume", "--overwrite"])


def test_trainer_config_needs_an_output_dir():
    parser, _ = _parser()
    with pytest.raises(ValueError, match="--output-dir"):
        trainer_config_from_args(parse_args(parser, ["train"]))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_then_typed_flags(tmp_path, suffix):
    path = tmp_path / f"cfg{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"lr": 0.5, "width": 7}))
    else:
        path.write_text("lr: 0.5\nwidth: 7\n")
    parser, _ = _parser()
    # the file beats the flag defaults; a typed flag beats the file
    assert config_from_args(
        PackageConfig, parse_args(parser, ["train", "--config", str(path)])
    ) == (PackageConfig(lr=0.5, width=7))
    args = parse_args(parser, ["train", "--config", str(path), "--lr", "0.2"])
    assert config_from_args(PackageConfig, args) == PackageConfig(lr=0.2, width=7)
    # without a file the flag defaults apply
    assert config_from_args(PackageConfig, parse_args(parser, ["train"])) == PackageConfig(lr=0.1)


def test_config_file_with_unknown_keys_is_refused(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"lr": 0.5, "depth": 2}))
    parser, _ = _parser()
    with pytest.raises(ValueError, match="depth"):
        config_from_args(PackageConfig, parse_args(parser, ["train", "--config", str(path)]))


def test_config_file_errors(tmp_path):
    parser, _ = _parser()
    with pytest.raises(FileNotFoundError):
        config_from_args(PackageConfig, parse_args(parser, ["train", "--config", "missing.json"]))
    bad = tmp_path / "cfg.txt"
    bad.write_text("lr=1")
    with pytest.raises(ValueError, match=r"\.json, \.yaml"):
        config_from_args(PackageConfig, parse_args(parser, ["train", "--config", str(bad)]))
    listed = tmp_path / "cfg.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        config_from_args(PackageConfig, parse_args(parser, ["train", "--config", str(listed)]))


def test_a_run_config_json_feeds_both_configs(tmp_path):
    record = {
        "trainer": TrainerConfig(output_dir="old", epochs=9, grad_accum_steps=4).to_dict(),
        "task": {"lr": 0.3, "width": 2, "name": "run"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(record))
    parser, _ = _parser()
    args = parse_args(
        parser, ["train", "--config", str(path), "--output-dir", "new", "--epochs", "2"]
    )
    assert config_from_args(PackageConfig, args) == PackageConfig(lr=0.3, width=2, name="run")
    cfg = trainer_config_from_args(args)
    assert (cfg.output_dir, cfg.epochs, cfg.grad_accum_steps) == ("new", 2, 4)


def test_demo_prints_mean_std_margin_and_verdict(capsys):
    parser, _ = _parser()
    assert parse_and_run(parser, ["demo"]) == 0
    out = capsys.readouterr().out
    assert "ours 4 +- 1 (n=3)" in out and "margin 1" in out and "verdict: held" in out
    assert parse_and_run(parser, ["demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdicts"][0]["verdict"] == "held"


def test_format_demo_result_without_verdicts():
    result = DemoResult("p", "c", "acc", 0.8, 0.5, True, Table(["a"], [[1]]))
    assert "ours 0.8 vs baseline 0.5 -> held (one run, no margin)" in format_demo_result(result)


def test_failure_is_one_line_and_exit_code_1(capsys):
    parser, train = _parser()

    def boom(args):
        raise ValueError("bad width")

    train.set_defaults(handler=boom)
    assert parse_and_run(parser, ["train"]) == 1
    assert capsys.readouterr().err.strip() == "error: ValueError: bad width"
