from __future__ import annotations

from pathlib import Path

import pytest
from softinfonce.demo import ARMS, MARGIN_PROBE, MARGIN_RETRIEVAL, judge_demo, run_demo


def _results(retrieval: dict[str, list[float]], probe: dict[str, list[float]]):
    out = {f"{arm}/retrieval_top1": values for arm, values in retrieval.items()}
    out.update({f"{arm}/linear_probe": values for arm, values in probe.items()})
    return out


def test_verdicts_compare_speed_aug_with_plain_and_soft_with_hard() -> None:
    flat = [50.0, 52.0, 51.0]
    retrieval = {"infonce": flat, "infonce_speed": flat, "softinfonce": [60.0, 61.0, 63.0]}
    probe = {"infonce": [60.0, 61.0, 59.0], "infonce_speed": flat, "softinfonce": flat}
    verdicts = judge_demo(_results(retrieval, probe), quick=False)
    pairs = [(v.metric, v.method.name, v.baseline.name, v.verdict) for v in verdicts]
    assert pairs == [
        (
            "cross-speed retrieval top-1 (%)",
            ARMS["infonce_speed"].label,
            ARMS["infonce"].label,
            "not shown",
        ),
        (
            "cross-speed retrieval top-1 (%)",
            ARMS["softinfonce"].label,
            ARMS["infonce_speed"].label,
            "held",
        ),
        ("linear probe top-1 (%)", ARMS["infonce_speed"].label, ARMS["infonce"].label, "reversed"),
        (
            "linear probe top-1 (%)",
            ARMS["softinfonce"].label,
            ARMS["infonce_speed"].label,
            "not shown",
        ),
    ]
    assert [v.margin for v in verdicts] == [MARGIN_RETRIEVAL] * 2 + [MARGIN_PROBE] * 2


def test_one_seed_is_never_held() -> None:
    results = _results(
        {"infonce": [10.0], "infonce_speed": [50.0], "softinfonce": [90.0]},
        {"infonce": [10.0], "infonce_speed": [50.0], "softinfonce": [90.0]},
    )
    verdicts = judge_demo(results, quick=True)
    assert {v.verdict for v in verdicts} == {"not shown"}
    assert "not shown (quick: 1 seed)" in verdicts[0].line()


@pytest.mark.slow
def test_quick_demo_runs_every_arm_and_writes_its_record(tmp_path: Path) -> None:
    """About 1-5 minutes on 2 shared cores."""
    result = run_demo(full=False, output_root=tmp_path, progress=False)
    assert [row[0] for row in result.table.rows] == [arm.label for arm in ARMS.values()]
    assert len(result.verdicts) == 4 and result.verdict == "not shown"
    assert (result.run_dir / "metrics.json").exists() and (result.run_dir / "loss.png").exists()
    runs = result.details["runs"]
    assert {r["arm"] for r in runs} == set(ARMS) and all(
        0 <= r["linear_probe"] <= 100 for r in runs
    )
    soft = next(r for r in runs if r["arm"] == "softinfonce")
    assert 0 < soft["mean_w"] <= 1  # feature weights of the partial pairs
