import argparse
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

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    formatter = sub.formatter_class(prog=command)
    flags = [
        a
        for a in sub._actions
        if a.option_strings and a.dest != "help" and a.default != argparse.SUPPRESS  # -v/-q/--json
    ]
    assert flags
    for action in flags:  # every flag has help text that shows its default
        assert action.help and "%(default)" in formatter._get_help_string(action), action.dest


def test_cli_import_does_not_load_torch():
    """``dyt --help`` stays fast: the CLI module and the package import no torch or timm."""
    import subprocess
    import sys

    code = "import sys, dyt.cli; print(sorted({'torch', 'timm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_demo_judges_both_claims_from_per_seed_results(tmp_path, monkeypatch):
    from papers_shared.verdict import judge_claim

    tiny = dataclasses.replace(demo_module.QUICK, pretrain_epochs=1, adapt_epochs=1, depth=1, img_size=8,
                               embed_dim=32, num_heads=2, num_seeds=3)  # fmt: skip
    monkeypatch.setattr(demo_module, "QUICK", tiny)
    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    assert (result.run_dir / "metrics.json").exists()
    assert (result.run_dir / "train_loss.png").exists()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1, 2]
    assert metrics["margins"] == {"flops_percent": 20.0, "accuracy_points": 1.0}
    runs = metrics["results"]
    assert all(len(runs[arm]["accuracy"]) == 3 for arm in ("full", "adaptformer", "dyt"))
    flops_verdict, accuracy_verdict = result.verdicts
    share = [100 * d / a for d, a in zip(runs["dyt"]["flops"], runs["adaptformer"]["flops"])]
    expected = judge_claim(share, [100.0] * 3, 20.0, higher_is_better=False)
    assert flops_verdict.verdict == expected.verdict
    assert flops_verdict.method.values == pytest.approx(share)
    expected = judge_claim([100 * a for a in runs["dyt"]["accuracy"]],
                           [100 * a for a in runs["adaptformer"]["accuracy"]], 1.0)  # fmt: skip
    assert accuracy_verdict.verdict == expected.verdict
    assert result.held == (flops_verdict.held and accuracy_verdict.held)
    assert len(result.table.rows) == 3 and "+-" in result.table.rows[2][2]


def test_quick_demo_with_one_seed_is_never_held(tmp_path, monkeypatch):
    tiny = dataclasses.replace(demo_module.QUICK, pretrain_epochs=1, adapt_epochs=1, depth=1, img_size=8,
                               embed_dim=32, num_heads=2)  # fmt: skip
    monkeypatch.setattr(demo_module, "QUICK", tiny)
    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    assert [v.verdict for v in result.verdicts] == ["not shown", "not shown"]
    assert all("not shown (quick: 1 seed)" in v.line() for v in result.verdicts)
    assert not result.held
