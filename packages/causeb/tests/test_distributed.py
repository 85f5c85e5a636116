"""CausEB under torchrun: two gloo processes train in lockstep and rank 0 writes the run."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from causeb import CauseEB

from papers_shared.dg import load_algorithm
from papers_shared.distributed import run_torchrun

TINY = {"cnn_width": 8, "batch_size": 8, "mlp_width": 16, "rds_draws": 500}
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from papers_shared.distributed import cleanup_distributed
    from papers_shared.dg import TrainConfig, train_algorithm
    import causeb.algorithm  # registers CauseEB

    out, hparams = sys.argv[1], json.loads(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    initial = {}

    def factory(*args):
        algorithm = causeb.CauseEB(*args)
        initial["cdpl"] = algorithm.cdpl[0].weight.detach().clone()
        return algorithm

    for projector in (False, True):
        cfg = TrainConfig(
            dataset="DebugDomains", algorithm="CauseEB", test_envs=[0], steps=3,
            checkpoint_freq=2, output_dir=f"{out}/projector{int(projector)}",
            hparams={**hparams, "train_projector": projector}, progress=False, device="cpu",
        )
        records, algorithm = train_algorithm(cfg, factory)
        moved = not torch.equal(initial["cdpl"], algorithm.cdpl[0].weight)
        print(f"rank {rank} projector {int(projector)} moved {moved}")
        name = f"{out}/projector{int(projector)}_rank{rank}"
        torch.save(dict(algorithm.named_parameters()), f"{name}.pt")
        with open(f"{name}.json", "w") as handle:
            json.dump([r["loss"] for r in records], handle)
    cleanup_distributed()  # collects DDP wrappers before leaving the group
    """
)


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    script = tmp_path / "ddp_causeb.py"
    script.write_text(SCRIPT)
    result = run_torchrun(
        [str(script), str(tmp_path), json.dumps(TINY)], nproc=2, timeout=240, check=True
    )
    for projector in (0, 1):
        params = [
            torch.load(tmp_path / f"projector{projector}_rank{rank}.pt", weights_only=True)
            for rank in (0, 1)
        ]
        assert params[0].keys() == params[1].keys()
        for key in params[0]:
            assert torch.equal(params[0][key], params[1][key]), key
        losses = [
            json.loads((tmp_path / f"projector{projector}_rank{r}.json").read_text())
            for r in (0, 1)
        ]
        assert losses[0] == losses[1] and all(math.isfinite(v) for v in losses[0])
        run = tmp_path / f"projector{projector}"
        assert [
            json.loads(line)["step"] for line in (run / "results.jsonl").read_text().splitlines()
        ] == [0, 2]
        assert (run / "done").exists()
        saved = torch.load(run / "model.pkl", weights_only=True)["model_dict"]
        for key, value in params[0].items():
            assert torch.equal(saved[key], value), key
        for rank in (0, 1):  # the projector is optimised only when asked
            assert f"rank {rank} projector {projector} moved {bool(projector)}" in result.stdout


@pytest.mark.distributed
@pytest.mark.slow
def test_causeb_train_cli_runs_unchanged_under_torchrun(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "causeb.cli", "train", "--dataset", "DebugDomains", "--test_envs", "0"]
    args += ["--steps", "2", "--hparams", json.dumps(TINY), "--output_dir", str(out)]
    result = run_torchrun(
        [*args, "--device", "cpu", "--no-progress"], nproc=2, timeout=240, check=True
    )
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 1
    assert (out / "done").exists()
    assert isinstance(load_algorithm(out / "model.pkl"), CauseEB)
