"""Two gloo processes keep identical banks equal to the global class means."""

from __future__ import annotations

import textwrap

import pytest

from papers_shared.distributed import run_torchrun

SCRIPT = textwrap.dedent(
    """
    import torch, torch.distributed as dist
    from ridg import RationaleInvarianceLoss
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 3)
    g = torch.Generator().manual_seed(0)
    z_all = [torch.randn(6, 4, generator=g) for _ in range(2)]
    y_all = [torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([0, 2, 2, 0, 2, 2])]
    loss_fn = RationaleInvarianceLoss(3, 4)
    loss_fn(z_all[rank], head, y_all[rank]).backward()
    z, y = torch.cat(z_all), torch.cat(y_all)
    for c in range(3):
        expected = head.weight.detach() * z[y == c].mean(0)
        assert torch.allclose(loss_fn.bank[c], expected, atol=1e-6), (rank, c)
    assert loss_fn.initialised.all()
    print("OK", rank)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_bank_is_synchronised_across_two_gloo_processes(tmp_path):
    script = tmp_path / "ddp_bank.py"
    script.write_text(SCRIPT)
    result = run_torchrun([str(script)], nproc=2, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK 0" in result.stdout and "OK 1" in result.stdout
