"""DSP training under torchrun (two gloo processes): the critic, outside the trainer's DDP
wrapper, starts from rank 0's weights and stays identical across ranks."""

from __future__ import annotations

import textwrap

import pytest

from papers_shared.distributed import run_torchrun

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from papers_shared.trainer import TrainerConfig
    from dsp_zsl.config import DSPConfig
    from dsp_zsl.data import SyntheticZSLConfig, load_xlsa17, write_synthetic_xlsa17
    from dsp_zsl.train import fit_dsp
    import os
    root = sys.argv[1]
    data_root = f"{root}/data{os.environ['RANK']}"  # each rank writes its own copy
    syn = SyntheticZSLConfig(num_seen=6, num_unseen=3, num_val=2, att_dim=8, feature_dim=16,
                             samples_per_class=12)
    write_synthetic_xlsa17(data_root, "SYN", syn)  # same content on both ranks
    data = load_xlsa17(data_root, "SYN")
    cfg = DSPConfig(dataset="SYN", base="tfvaegan", feature_dim=16, att_dim=8, hidden_dim=32,
                    batch_size=8, critic_iter=2, syn_num=10, classifier_epochs=1)
    result = fit_dsp(cfg, TrainerConfig(output_dir=root + "/run", epochs=1, device="cpu",
                                        log_every=1000), data)
    rank = int(os.environ["RANK"])
    flat = torch.cat([p.detach().flatten() for p in result.model.critic.parameters()])
    gen = torch.cat([p.detach().flatten() for p in result.model.generator.parameters()])
    torch.save({"critic": flat, "gen": gen}, f"{root}/params{rank}.pt")
    print("OK", rank)
    """
)


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_processes_keep_the_critic_in_sync(tmp_path):
    import torch

    script = tmp_path / "ddp_dsp.py"
    script.write_text(SCRIPT)
    result = run_torchrun([str(script), str(tmp_path)], nproc=2, timeout=600, check=True)
    assert "OK 0" in result.stdout and "OK 1" in result.stdout
    p0, p1 = (torch.load(tmp_path / f"params{r}.pt") for r in (0, 1))
    torch.testing.assert_close(p0["critic"], p1["critic"])
    torch.testing.assert_close(p0["gen"], p1["gen"])
