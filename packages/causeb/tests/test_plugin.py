import json

import causeb.demo as demo_module
import pytest
from causeb.info import REFERENCE
from causeb.plugin import METHOD

from papers_shared.methods import Method


@pytest.mark.slow  # about 20 s on a free CPU, eight harness runs
def test_demo_writes_metrics_and_plot_and_computes_held(tmp_path, monkeypatch):
    tiny = demo_module.DemoConfig({"ColoredDigits": (2,), "RotatedDigits": (0,)}, 1, 3, 2)
    monkeypatch.setattr(demo_module, "QUICK", tiny)
    result = METHOD.demo(full=False, output_root=tmp_path, progress=False, seed=0)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert (result.run_dir / "heldout_accuracy.png").stat().st_size > 0
    assert metrics["held"] == result.held
    expected = metrics["beats_erm"] and metrics["beats_late"] and metrics["lowers_hsic"]
    assert result.held == expected
    assert result.ours == pytest.approx(metrics["accuracy"]["CausEB"])
    assert result.baseline == pytest.approx(metrics["accuracy"]["ERM"])
    assert len(metrics["runs"]) == 2 * len(demo_module.DEMO_VARIANTS)


def test_plugin_is_a_method():
    assert isinstance(METHOD, Method) and METHOD.name == "causeb"


@pytest.mark.slow
def test_info_matches_the_reference_counts():
    [table] = METHOD.info()
    for row in table.rows:
        ref = REFERENCE[row[0]]
        assert row[1].startswith(f"{ref['total']:,} ")
        assert row[2].startswith(f"{ref['optimised']:,} ")
        assert row[4] == f"{ref['gflops']:.3f} ({ref['gflops']:.3f})"
