"""The command line: help with examples, info, train -> eval -> predict on generated shapes."""

import json

import numpy as np
import pytest
from etris.cli import build_parser, main
from PIL import Image

VERBS = ("info", "demo", "train", "eval", "predict", "convert", "convert-lmdb")


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_two_examples(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    examples = out.split("examples:")[1].strip().splitlines()
    assert len(examples) == 2 and all(e.strip().startswith("etris ") for e in examples)


def test_flags_are_kebab_case():
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices["train"]._actions:
        for flag in action.option_strings:
            assert "_" not in flag, flag


def test_info_tables_on_tiny_variants():
    from etris.info import info

    params, share = info(variants=("etris_test_rn", "etris_test_vit"))
    rows = {r[0]: r for r in params.rows}
    from etris.models import create_etris

    counts = create_etris("etris_test_rn").parameter_counts()
    assert rows["etris_test_rn"][1] == counts["bridger"]
    assert rows["etris_test_rn"][7] == counts["trainable"]
    assert float(rows["etris_test_vit"][9]) > 0
    assert share.rows[0][1].endswith("%")


def test_train_eval_predict_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--variant", "etris_test_vit", "--word-len", "16"]
    code = main(
        [
            "train",
            "--dataset",
            "shapes",
            *common,
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--output-dir",
            str(run),
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert code == 0
    assert (run / "model.safetensors").exists()
    capsys.readouterr()
    # the same folder again is refused without --resume / --overwrite: one error line, exit 1
    again = main(
        ["train", "--dataset", "shapes", *common, "--output-dir", str(run), "--max-steps", "1"]
    )
    assert again == 1
    assert "error:" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--dataset",
                "shapes",
                *common,
                "--checkpoint",
                str(run),
                "--batch-size",
                "8",
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["mIoU"] <= 1.0 and "Pr@0.5" in metrics and "oIoU" in metrics
    image = tmp_path / "in.png"
    Image.fromarray(np.full((40, 56, 3), 120, dtype=np.uint8)).save(image)
    out = tmp_path / "pred" / "red.png"
    assert (
        main(
            [
                "predict",
                *common,
                "--checkpoint",
                str(run),
                "--image",
                str(image),
                "--text",
                "the red circle",
                "--output",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert Image.open(out).size == (56, 40)
    assert Image.open(result["mask"]).size == (56, 40)


def test_convert_writes_safetensors(tmp_path, capsys, tiny):
    import torch
    from etris.convert import to_official_checkpoint

    torch.save(to_official_checkpoint(tiny("rn"), epoch=3), tmp_path / "best.pth")
    out = tmp_path / "model.safetensors"
    assert (
        main(
            [
                "convert",
                "--variant",
                "etris_test_rn",
                "--checkpoint",
                str(tmp_path / "best.pth"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert out.exists() and json.loads(capsys.readouterr().out)["epoch"] == 3
