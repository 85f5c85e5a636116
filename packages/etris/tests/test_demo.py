"""The demo pipeline end to end at toy size (the verdict itself needs the real settings)."""

import json

from etris.demo import ARMS, MARGIN, DemoSettings, run_demo


def test_demo_runs_every_arm_and_writes_outputs(tmp_path):
    settings = DemoSettings(
        seeds=1,
        clip_steps=2,
        seg_steps=2,
        train_samples=32,
        val_samples=8,
        batch_size=8,
        clip_batch_size=16,
    )
    result = run_demo(settings, tmp_path, progress=False, seed=0, quick=True)
    assert [row[0] for row in result.table.rows] == list(ARMS)
    assert result.verdicts[0].verdict == "not shown"  # one seed never shows a claim
    assert result.verdicts[0].margin == MARGIN
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert len(metrics["per_seed_mIoU"][ARMS[0]]) == 1
    assert (result.run_dir / "miou_per_seed.png").exists()
    share = metrics["bridger_share_percent"]
    assert share["decoder only"] == 0.0 and share[ARMS[0]] > 0
