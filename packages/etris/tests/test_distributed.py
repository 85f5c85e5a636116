"""Training runs unchanged under torchrun (2 processes, gloo on CPU)."""

import json
import textwrap

import pytest


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_training(tmp_path):
    from papers_shared.distributed import run_torchrun

    script = tmp_path / "train.py"
    out = tmp_path / "run"
    script.write_text(
        textwrap.dedent(
            f"""
            from etris.cli import main
            raise SystemExit(main(["train", "--dataset", "shapes", "--variant", "etris_test_vit",
                "--word-len", "16", "--epochs", "1", "--max-steps", "2", "--batch-size", "4",
                "--device", "cpu", "--output-dir", {str(out)!r}]))
            """
        )
    )
    run_torchrun([str(script)], 2, timeout=600, check=True)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 2
