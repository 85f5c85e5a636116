"""Two gloo processes: identical banks equal to the global class means, and RIDG training under
torchrun equal to the one-process run with the same global batch."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from ridg import RIDG  # noqa: F401  (registers the algorithm)

from papers_shared.dg import TrainConfig, load_algorithm, train_algorithm
from papers_shared.distributed import run_torchrun

SCRIPT = textwrap.dedent(
    """
    import torch, torch.distributed as dist
    from papers_shared.distributed import cleanup_distributed
    from ridg import RationaleInvarianceLoss
    from ridg.losses import closed_form_rationale_loss
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 3)
    g = torch.Generator().manual_seed(0)
    z_all = [torch.randn(6, 4, generator=g) for _ in range(2)]
    y_all = [torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([0, 2, 2, 0, 2, 2])]
    loss_fn = RationaleInvarianceLoss(3, 4)
    loss = loss_fn(z_all[rank], head, y_all[rank])
    loss.backward()
    z, y = torch.cat(z_all), torch.cat(y_all)
    # each rank's loss is its share of the global-batch loss, times the world size
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    expected_loss = closed_form_rationale_loss(z, head.weight.detach(), y, loss_fn.bank)
    assert torch.allclose(mean_loss / 2, expected_loss, atol=1e-6), (mean_loss, expected_loss)
    for c in range(3):
        expected = head.weight.detach() * z[y == c].mean(0)
        assert torch.allclose(loss_fn.bank[c], expected, atol=1e-6), (rank, c)
    assert loss_fn.initialised.all()
    print("OK", rank)
    cleanup_distributed()  # collects DDP wrappers before leaving the group
    """
)


@pytest.mark.distributed
@pytest.mark.slow
def test_bank_is_synchronised_across_two_gloo_processes(tmp_path):
    script = tmp_path / "ddp_bank.py"
    script.write_text(SCRIPT)
    result = run_torchrun([str(script)], nproc=2, timeout=240, check=True)
    assert "OK 0" in result.stdout and "OK 1" in result.stdout


TINY = {"cnn_width": 8, "batch_size": 8, "momentum": 0.1, "ridg_reg": 1.0}
TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from papers_shared.distributed import cleanup_distributed
    from papers_shared.dg import TrainConfig, train_algorithm
    import ridg.algorithm  # registers RIDG

    out, hparams = sys.argv[1], json.loads(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for double in (False, True):
        cfg = TrainConfig(
            dataset="DebugDomains", algorithm="RIDG", test_envs=[0], steps=3, checkpoint_freq=2,
            output_dir=None, hparams={**hparams, "ridg_double_forward": double}, progress=False,
            device="cpu",
        )
        records, algorithm = train_algorithm(cfg)
        torch.save(algorithm.state_dict(), f"{out}/double{int(double)}_rank{rank}.pt")
        losses = [{k: r[k] for k in ("loss", "ce", "invariance")} for r in records]
        with open(f"{out}/double{int(double)}_rank{rank}.json", "w") as handle:
            json.dump(losses, handle)
    cleanup_distributed()  # collects DDP wrappers before leaving the group
    """
)


def tiny_config(**overrides):
    fields = {
        "dataset": "DebugDomains",
        "algorithm": "RIDG",
        "test_envs": [0],
        "steps": 3,
        "checkpoint_freq": 2,
        "output_dir": None,
        "hparams": TINY,
        "progress": False,
        "device": "cpu",
    }
    return TrainConfig(**{**fields, **overrides})


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_processes_train_ridg_like_one_process(tmp_path):
    script = tmp_path / "ddp_ridg.py"
    script.write_text(TRAIN_SCRIPT)
    run_torchrun([str(script), str(tmp_path), json.dumps(TINY)], nproc=2, timeout=240, check=True)
    for double in (0, 1):
        single_records, single = train_algorithm(
            tiny_config(hparams={**TINY, "ridg_double_forward": bool(double)})
        )
        expected = single.state_dict()
        assert single.invariance.initialised.all()
        states = [
            torch.load(tmp_path / f"double{double}_rank{rank}.pt", weights_only=True)
            for rank in (0, 1)
        ]
        assert torch.equal(states[0]["invariance.bank"], states[1]["invariance.bank"])
        for rank, state in enumerate(states):
            assert state.keys() == expected.keys()
            for key, value in expected.items():  # parameters and the bank
                torch.testing.assert_close(
                    state[key], value, atol=1e-5, rtol=0, msg=f"{key} rank {rank}"
                )
            records = json.loads((tmp_path / f"double{double}_rank{rank}.json").read_text())
            for got, want in zip(records, single_records, strict=True):
                for name in ("loss", "ce", "invariance"):
                    assert got[name] == pytest.approx(want[name], abs=1e-5), name


@pytest.mark.distributed
@pytest.mark.slow
def test_ridg_train_cli_runs_unchanged_under_torchrun(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "ridg.cli", "train", "--dataset", "DebugDomains", "--test_envs", "0"]
    args += ["--steps", "3", "--hparams", json.dumps(TINY), "--output_dir", str(out)]
    result = run_torchrun(
        [*args, "--device", "cpu", "--no-progress"], nproc=2, timeout=240, check=True
    )
    printed = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1  # rank 0 reports, once
    assert json.loads(printed[0])["step"] == 2
    assert (out / "done").exists() and (out / "results.jsonl").exists()
    algorithm = load_algorithm(out / "model.pkl")  # `ridg eval` loads it the same way
    assert type(algorithm).__name__ == "RIDG" and algorithm.invariance.initialised.all()
