import json

import causeb.demo as demo_module
import pytest
from causeb.info import REFERENCE
from causeb.plugin import METHOD

from papers_shared.methods import Method


def _fake_results(causeb_minus_erm):
    """RunResults for 3 seeds x 2 datasets: ERM at 60 % (+ seed), CausEB shifted."""
    from papers_shared.dg.compare import RunResult

    results = []
    for seed, shift in enumerate(causeb_minus_erm):
        for dataset, env in (("ColoredDigits", 2), ("RotatedDigits", 0)):
            base = 0.60 + 0.02 * seed
            for label, acc in (("ERM", base), ("CausEB", base + shift)):
                records = [{"step": 0, "hsic": 0.01, f"env{env}_in_acc": acc}]
                results.append(RunResult(label, env, seed, acc, base, records, None, dataset))
    return results


@pytest.mark.parametrize(
    "shifts, verdict",
    [
        ((0.04, 0.05, 0.03), "held"),
        ((0.004, 0.006, 0.005), "not shown"),  # within the 1-point margin
        ((0.05, -0.05, 0.02), "not shown"),  # noisy
        ((-0.04, -0.05, -0.03), "reversed"),
    ],
)
def test_demo_verdict_compares_causeb_with_erm_on_held_out_accuracy(
    tmp_path, monkeypatch, shifts, verdict
):
    monkeypatch.setattr(demo_module, "compare_algorithms", lambda *a, **k: _fake_results(shifts))
    config = demo_module.DemoConfig({"ColoredDigits": (2,), "RotatedDigits": (0,)}, 3, 2, 1)
    result = demo_module.run_demo(config, output_root=tmp_path, progress=False)
    assert result.verdict == verdict and result.held == (verdict == "held")
    [v] = result.verdicts
    assert (v.method.name, v.baseline.name) == ("CausEB", "ERM") and v.margin == 1.0
    assert v.mean_diff == pytest.approx(100 * sum(shifts) / 3)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["verdict"]["verdict"] == verdict
    assert (result.run_dir / "heldout_accuracy.png").stat().st_size > 0


@pytest.mark.slow  # about 30 s on a free CPU
def test_quick_demo_runs_two_seeds_and_never_claims_a_verdict(tmp_path):
    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    [v] = result.verdicts
    assert v.n == 2 and result.verdict == "not shown" and "quick: 2 seeds" in v.line()
    assert [row[0] for row in result.table.rows] == ["ERM", "CausEB"]


def test_plugin_is_a_method():
    assert isinstance(METHOD, Method) and METHOD.name == "causeb"


@pytest.mark.slow
def test_info_matches_the_reference_counts():
    [table] = METHOD.info()
    for row in table.rows:
        ref = REFERENCE[row[0]]
        assert row[1].startswith(f"{ref['total']:,} ")
        assert row[2].startswith(f"{ref['optimised']:,} ")
        assert row[5] == f"{ref['gflops']:.3f} ({ref['gflops']:.3f})"  # conv + linear
        assert float(row[4]) > ref["gflops"]  # the shared counter adds BatchNorm
