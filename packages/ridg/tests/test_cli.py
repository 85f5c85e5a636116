"""The DomainBed-compatible CLI: train, eval, sweep (resumable), collect, bad data folders."""

from __future__ import annotations

import json

import pytest
from ridg.cli import main
from ridg.demo import DemoConfig, run_demo

HP = json.dumps({"cnn_width": 8, "batch_size": 4})


def test_train_writes_domainbed_results_and_eval_reads_the_model(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "DebugDomains", "--test_envs", "0", "--steps", "3"]
    assert main([*argv, "--hparams", HP, "--output_dir", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    assert {"env0_in_acc", "env1_out_acc", "loss", "invariance", "hparams", "args"} <= set(
        records[-1]
    )
    assert records[-1]["args"]["algorithm"] == "RIDG"
    assert (out / "done").exists() and (out / "model.pkl").exists()
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model.pkl"), "--json"]) == 0
    accs = json.loads(capsys.readouterr().out)
    assert set(accs) == {"0", "1", "2"} and all(0.0 <= a <= 1.0 for a in accs.values())
    assert main(["eval", "--model", str(out), "--json"]) == 0  # the run folder itself
    assert json.loads(capsys.readouterr().out) == accs
    assert main([*argv, "--hparams", HP, "--output-dir", str(out)]) == 1  # holds a run now
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (out / "model.pkl").exists()


def test_sweep_resumes_and_collect_prints_a_table(tmp_path, capsys):
    sweep = [
        "sweep", "launch", "--datasets", "DebugDomains", "--n_hparams", "1", "--n_trials", "1",
        "--steps", "2", "--single_test_envs", "--skip_model_save", "--hparams", HP,
        "--output_dir", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    assert main(sweep) == 0
    assert "ran 3, skipped 0" in capsys.readouterr().out
    assert main(sweep) == 0
    assert "ran 0, skipped 3" in capsys.readouterr().out
    assert main(["collect", "--input_dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "RIDG" in table and "training_domain" in table


def test_missing_or_malformed_dataset_folder_gives_one_clear_error(tmp_path, capsys):
    argv = [
        "train",
        "--dataset",
        "PACS",
        "--data_dir",
        str(tmp_path),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "PACS folder not found" in err and "art_painting" in err
    (tmp_path / "PACS" / "art_painting").mkdir(parents=True)
    assert main(argv) == 1
    assert "lacks domain folder(s)" in capsys.readouterr().err


def test_unknown_hparam_is_refused(tmp_path, capsys):
    argv = ["train", "--dataset", "DebugDomains", "--hparams", '{"ridg_regg": 1}']
    assert main([*argv, "--output_dir", str(tmp_path)]) == 1
    assert "unknown hyper-parameter" in capsys.readouterr().err


def _fake_results(ridg_minus_erm):
    """RunResults for 3 seeds x 2 held-out domains: ERM at 80 % (+ seed), RIDG shifted."""
    from papers_shared.dg.compare import RunResult

    results = []
    for seed, shift in enumerate(ridg_minus_erm):
        for env in (0, 5):
            base = 0.80 + 0.01 * seed
            results.append(RunResult("ERM", env, seed, base, base, [], dataset="RotatedDigits"))
            results.append(
                RunResult("RIDG", env, seed, base + shift, base, [], dataset="RotatedDigits")
            )
    return results


@pytest.mark.parametrize(
    "shifts, verdict",
    [
        ((0.030, 0.025, 0.035), "held"),  # +3 points, steady: beyond the 1-point margin
        ((0.005, 0.004, 0.006), "not shown"),  # +0.5 points: within the margin
        ((0.030, -0.030, 0.010), "not shown"),  # +0.3 on average, noisy
        ((-0.030, -0.025, -0.035), "reversed"),
    ],
)
def test_demo_verdict_follows_the_per_seed_results(tmp_path, monkeypatch, shifts, verdict):
    import ridg.demo as demo_module

    monkeypatch.setattr(demo_module, "compare_algorithms", lambda *a, **k: _fake_results(shifts))
    config = DemoConfig({"RotatedDigits": [0, 5]}, seeds=[0, 1, 2], steps=2, checkpoint_freq=1)
    result = run_demo(config, output_root=tmp_path, progress=False)
    assert result.verdict == verdict and result.held == (verdict == "held")
    [v] = result.verdicts
    assert v.margin == demo_module.MARGIN == 1.0 and v.n == 3
    assert v.mean_diff == pytest.approx(100 * sum(shifts) / 3)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["verdict"]["verdict"] == verdict


def test_tiny_demo_run_reports_its_measured_runs(tmp_path):
    config = DemoConfig({"DebugDomains": [0]}, seeds=[0], steps=2, checkpoint_freq=1)
    result = run_demo(config, output_root=tmp_path, progress=False, quick=True)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert (result.run_dir / "heldout_accuracy.png").exists()
    by_arm = {r["label"]: 100 * r["test_acc"] for r in metrics["runs"]}
    [v] = result.verdicts
    assert v.method.values == (pytest.approx(by_arm["RIDG"]),)
    assert v.baseline.values == (pytest.approx(by_arm["ERM"]),)
    assert result.verdict == "not shown" and "quick: 1 seed" in v.line()


@pytest.mark.slow
def test_quick_demo_uses_two_seeds_and_never_claims_a_verdict(tmp_path):
    from ridg.demo import demo

    result = demo(full=False, output_root=tmp_path, progress=False)
    [v] = result.verdicts
    assert v.n == 2 and result.verdict == "not shown" and "quick: 2 seeds" in v.line()
    assert [row[0] for row in result.table.rows] == ["ERM", "RIDG"]
