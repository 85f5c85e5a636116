import math

import pytest

from papers_shared.methods import DemoResult
from papers_shared.verdict import ArmStats, judge_claim


def test_clear_win_over_three_seeds_holds():
    v = judge_claim([72.0, 71.0, 73.0], [66.0, 66.5, 66.0], margin=2.0, method_name="A")
    assert v.verdict == "held" and v.held
    assert v.mean_diff == pytest.approx(6.0 - 0.5 / 3)


def test_mean_difference_and_standard_error_by_hand():
    v = judge_claim([3.0, 5.0, 7.0], [1.0, 1.0, 1.0], margin=1.0)
    # d = 2, 4, 6: mean 4, std 2, se 2 / sqrt(3)
    assert v.mean_diff == pytest.approx(4.0)
    assert v.se_diff == pytest.approx(2 / math.sqrt(3))
    assert v.verdict == "held"  # 4 > 1 and 4 > 2.31


def test_win_within_the_margin_is_not_shown():
    v = judge_claim([70.5, 70.6, 70.4], [70.0, 70.0, 70.0], margin=1.0)
    assert v.verdict == "not shown" and "within the margin" in v.reason


def test_noisy_win_beyond_the_margin_is_not_shown():
    # d = 10, -4, 3: mean 3 > margin 1, but se = 4.04 so 2 se > mean
    v = judge_claim([20.0, 6.0, 13.0], [10.0, 10.0, 10.0], margin=1.0)
    assert v.mean_diff == pytest.approx(3.0)
    assert v.verdict == "not shown" and "standard error" in v.reason


def test_clear_loss_is_reversed():
    v = judge_claim([60.0, 61.0, 60.5], [66.0, 66.0, 66.0], margin=2.0)
    assert v.verdict == "reversed"


def test_lower_is_better_flips_the_sign():
    v = judge_claim([0.10, 0.11, 0.09], [0.30, 0.31, 0.29], margin=0.05, higher_is_better=False)
    assert v.verdict == "held" and v.mean_diff == pytest.approx(0.2)


def test_fewer_than_three_seeds_is_never_held_and_says_why():
    v = judge_claim([90.0, 91.0], [10.0, 11.0], margin=1.0, quick=True)
    assert v.verdict == "not shown"
    assert "at least 3" in v.reason
    assert "not shown (quick: 2 seeds)" in v.line()


def test_line_gives_mean_std_per_arm_margin_and_verdict():
    v = judge_claim(
        [3.0, 5.0, 7.0], [1.0, 2.0, 3.0], margin=1.5, method_name="CausEB", baseline_name="ERM",
        metric="held-out acc (%)",
    )  # fmt: skip
    line = v.line()
    assert "CausEB 5 +- 2 (n=3)" in line and "ERM 2 +- 1 (n=3)" in line
    assert "margin 1.5" in line and "-> held" in line and "held-out acc (%)" in line
    assert v.to_dict()["method"]["std"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("method", "baseline", "margin", "error"),
    [
        ([1.0, 2.0], [1.0], 1.0, ValueError),
        ([], [], 1.0, ValueError),
        ([1.0, float("nan"), 2.0], [1.0, 1.0, 1.0], 1.0, ValueError),
        ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], -1.0, ValueError),
        ("123", "456", 1.0, TypeError),
    ],
)
def test_bad_input_is_refused(method, baseline, margin, error):
    with pytest.raises(error):
        judge_claim(method, baseline, margin)


def test_arm_stats():
    arm = ArmStats("x", (1.0, 2.0, 3.0))
    assert arm.mean == 2.0 and arm.std == pytest.approx(1.0)


def _table():
    from papers_shared.methods import Table

    return Table(["arm"], [["a"]])


def test_demo_result_held_is_derived_from_verdicts():
    held = judge_claim([3.0, 4.0, 5.0], [1.0, 1.0, 1.0], margin=0.5)
    not_shown = judge_claim([1.0, 1.1, 0.9], [1.0, 1.0, 1.0], margin=0.5)
    both = DemoResult("p", "c", "m", held=True, table=_table(), verdicts=[held, not_shown])
    assert not both.held and both.verdict == "not shown"
    one = DemoResult("p", "c", "m", table=_table(), verdicts=[held])
    assert one.held and one.ours == pytest.approx(4.0) and one.baseline == pytest.approx(1.0)
    assert one.to_dict()["verdicts"][0]["verdict"] == "held"
    assert "-> held" in one.summary_lines()[0]
