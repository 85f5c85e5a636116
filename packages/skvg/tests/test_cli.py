import json

from skvg.cli import main
from skvg.data.synthetic import SceneConfig, write_synthetic_dataset


def test_validate_stats_eval(tmp_path, capsys):
    root = write_synthetic_dataset(
        tmp_path / "data", train=6, val=3, test=6, seed=0, scene=SceneConfig(64, 2, 16)
    )
    assert main(["validate", "--data-root", str(root), "--check-images"]) == 0
    assert main(["stats", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "train" in out
    records = json.loads((root / "annotations.json").read_text())["test"]
    preds = [{"index": i, "bbox": r["bbox"]} for i, r in enumerate(records)]
    preds[0]["bbox"] = {**preds[0]["bbox"], "x": preds[0]["bbox"]["x"] + 40.0}  # a miss
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    capsys.readouterr()
    assert (
        main(
            [
                "--json",
                "eval",
                "--data-root",
                str(root),
                "--predictions",
                str(tmp_path / "preds.json"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert abs(result["all"] - 5 / 6) < 1e-9, result
    bad = json.loads((root / "annotations.json").read_text())
    bad["train"][0]["bbox"]["width"] = -1.0
    (root / "annotations.json").write_text(json.dumps(bad))
    assert main(["validate", "--data-root", str(root)]) != 0
