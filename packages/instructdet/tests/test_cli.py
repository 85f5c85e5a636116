import json

import pytest
from instructdet.cli import build_parser, main


def _verbs():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_flag_has_help_and_examples():
    for name, parser in _verbs().items():
        text = " ".join(parser.format_help().split())
        assert "examples:" in text, name
        for action in parser._actions:
            if action.option_strings and action.help != "==SUPPRESS==":
                assert action.help, (name, action.option_strings)  # no flag without help
        if name == "generate":
            assert "(default: ViT-B-32-quickgelu)" in text and "(default: template)" in text


def test_build_generate_export_validate_evaluate(tmp_path, capsys):
    records = tmp_path / "rec.jsonl"
    assert main(["build", "--source", "sample", "--output", str(records)]) == 0
    run = tmp_path / "run"
    stages = "llm_phrases,shared_phrases,conjunctions,levels"
    assert (
        main(
            ["generate", str(records), "--output-dir", str(run), "--stages", stages, "--seed", "1"]
        )
        == 0
    )
    assert (
        main(
            ["generate", str(records), "--output-dir", str(run), "--stages", stages, "--seed", "1"]
        )
        == 1
    )
    assert "--resume" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                str(records),
                "--output-dir",
                str(run),
                "--stages",
                stages,
                "--seed",
                "1",
                "--resume",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["nothing_to_do"] is True
    exported = tmp_path / "indet.json"
    assert main(["export", str(run / "records.jsonl"), "--output", str(exported)]) == 0
    assert main(["validate", str(exported)]) == 0
    assert main(["stats", str(exported), "--json"]) == 0
    capsys.readouterr()
    data = json.loads(exported.read_text())
    preds = [
        {"image_id": img["id"], "bbox": [0, 0, img["width"], img["height"]], "score": 1.0}
        for img in data["images"]
    ]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    assert main(["evaluate", str(exported), str(tmp_path / "pred.json"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["overall"]["acc@0.5"] <= 1.0
    filtered = tmp_path / "f.json"
    assert main(["filter", str(exported), "--levels", "4", "--output", str(filtered)]) == 0
    assert {lv for img in json.loads(filtered.read_text())["images"] for lv in img["levels"]} == {4}
    merged = tmp_path / "m.json"
    assert main(["merge", str(exported), str(filtered), "--output", str(merged)]) == 0
    assert main(["validate", str(merged)]) == 0


def test_bad_input_gives_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid JSON" in err[0]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": [{"id": 0}], "annotations": [], "categories": []}))
    assert main(["validate", str(broken)]) == 1
    assert "file_name" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["generate", str(bad), "--shard"])
    assert (
        main(["generate", str(tmp_path / "none.jsonl"), "--output-dir", str(tmp_path / "o")]) == 1
    )
    assert "no JSONL file" in capsys.readouterr().err
