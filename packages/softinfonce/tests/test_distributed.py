from __future__ import annotations

import json
from pathlib import Path

import pytest
from softinfonce.data.synthetic import SyntheticSpec, generate_split

from papers_shared.distributed import run_torchrun

pytestmark = pytest.mark.distributed


def test_gathered_loss_and_gradients_match_one_process(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run_torchrun(
        [str(Path(__file__).with_name("dist_loss_worker.py")), str(out)],
        nproc=2,
        timeout=300,
        check=True,
    )
    for mode, result in json.loads(out.read_text()).items():
        assert result["loss_error"] < 1e-6, mode
        assert result["grad_error"] < 1e-6, mode
        assert result["candidates"] == 16  # 2N over both ranks


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="plain"),
        pytest.param(
            ["--chunk-size", "3", "--precision", "bf16"], id="chunked-bf16", marks=pytest.mark.slow
        ),
    ],
)
def test_pretraining_runs_under_torchrun(tmp_path: Path, extra: list[str]) -> None:
    spec = SyntheticSpec(num_classes=2, duration=2.2, fps=20, size=32, sample_rate=8000)
    generate_split(tmp_path / "clips", "train", 8, spec=spec)
    args = [
        "-m",
        "softinfonce.cli",
        "train",
        "--data-root",
        str(tmp_path / "clips"),
        "--arch",
        "mlp",
        "--crop-size",
        "16",
        "--num-frames",
        "4",
        "--frame-rate",
        "8",
        "--audio-duration",
        "0.5",
        "--sample-rate",
        "8000",
        "--n-fft",
        "256",
        "--batch-size",
        "2",
        "--max-steps",
        "2",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--output-dir",
        str(tmp_path / "run"),
        *extra,
    ]
    proc = run_torchrun(args, nproc=2, timeout=300, check=True)
    assert (tmp_path / "run" / "model.safetensors").exists()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # 2 clips per rank and step, 2 views each, gathered over 2 ranks
    assert summary["steps"] == 2 and summary["train_candidates"] == 8.0
    assert (tmp_path / "run" / "history.jsonl").exists()
