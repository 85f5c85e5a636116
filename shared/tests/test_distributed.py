import textwrap

import pytest

from papers_shared.distributed import init_distributed, run_torchrun, unwrap_model

SCRIPT = textwrap.dedent("""
    import torch
    from torch import nn
    from papers_shared.distributed import all_reduce_mean, cleanup_distributed, init_distributed, wrap_ddp

    def step(ctx):
        torch.manual_seed(ctx.rank)  # different data per rank
        model = wrap_ddp(nn.Linear(3, 1), ctx)
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        return model.module.weight.grad.clone()

    ctx = init_distributed()
    grad = step(ctx)  # the DDP wrapper is gone before the group is left
    gathered = [torch.zeros_like(grad) for _ in range(ctx.world_size)]
    torch.distributed.all_gather(gathered, grad)
    assert torch.allclose(gathered[0], gathered[1]), "DDP must average gradients"
    print(f"rank {ctx.rank}/{ctx.world_size} mean {all_reduce_mean(float(ctx.rank)):.2f}")
    cleanup_distributed()
""")


def test_single_process_context_is_a_no_op():
    ctx = init_distributed(device="cpu")
    assert not ctx.is_distributed and ctx.is_main and ctx.device.type == "cpu"


@pytest.mark.distributed
def test_ddp_on_two_gloo_processes(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    result = run_torchrun([str(script)], nproc=2, timeout=120, check=True)
    assert "rank 0/2 mean 0.50" in result.stdout and "rank 1/2 mean 0.50" in result.stdout


def test_unwrap_model_returns_plain_module():
    import torch.nn as nn

    model = nn.Linear(2, 2)
    assert unwrap_model(model) is model


@pytest.mark.distributed
def test_run_torchrun_check_reports_a_failed_job(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nprint('worker says no', file=sys.stderr)\nsys.exit(3)\n")
    assert run_torchrun([str(script)], nproc=1, timeout=120).returncode != 0
    with pytest.raises(RuntimeError, match="worker says no"):
        run_torchrun([str(script)], nproc=1, timeout=120, check=True)
