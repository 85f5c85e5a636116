import dataclasses
import json

import dyt.demo as demo_module
import pytest
from dyt.cli import build_parser, main
from dyt.plugin import METHOD


def test_info_prints_table_beside_paper(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "DyT VTAB d=8 r=0.5" in out and "12.54" in out and "0.166" in out
    assert "n/a" not in out
    for label, ours in [
        ("Attn dispatch", "14.50"),
        ("Attn-MLP", "12.68"),
        ("Layer dispatch", "12.45"),
        ("DyT Swin-B", "10.92"),
    ]:
        row = next(line for line in out.splitlines() if line.startswith(f"| {label}"))
        assert f"| {ours} " in row, row
    assert main(["info", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert tables[0]["rows"][1][3] == "17.61"


@pytest.mark.parametrize("command", ["train", "eval", "report", "demo"])
def test_every_help_ends_with_two_examples(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    lines = [line for line in capsys.readouterr().out.strip().splitlines() if line.strip()]
    assert lines[-3].strip() == "examples:"
    assert all(line.strip().startswith("dyt-tuning") or "torchrun" in line for line in lines[-2:])


def test_demo_writes_metrics_and_plot(tmp_path, monkeypatch):
    tiny = dataclasses.replace(demo_module.QUICK, pretrain_epochs=1, adapt_epochs=1, depth=2,
                               embed_dim=32, num_heads=2)  # fmt: skip
    monkeypatch.setattr(demo_module, "QUICK", tiny)
    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    assert (result.run_dir / "metrics.json").exists()
    assert (result.run_dir / "train_loss.png").exists()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"full", "adaptformer", "dyt", "held", "flops_ratio"}
    assert metrics["dyt"]["mflops"] < metrics["adaptformer"]["mflops"] or not result.held
    assert result.held == (
        metrics["dyt"]["accuracy"] >= metrics["adaptformer"]["accuracy"] - 0.03
        and metrics["flops_ratio"] >= 1.2
    )
    assert len(result.table.rows) == 3
