"""DSP and the plain bases through the shared trainer: smoke runs, run folders, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from dsp_zsl.config import DSPConfig
from dsp_zsl.convert import load_baseline_nets, read_baseline_file
from dsp_zsl.data import SyntheticZSLConfig, load_xlsa17, write_synthetic_xlsa17
from dsp_zsl.train import build_dsp_model, evaluate_model, fit_dsp, load_dsp_checkpoint

from papers_shared.trainer import RunFolderError, TrainerConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    cfg = SyntheticZSLConfig(
        num_seen=6, num_unseen=3, num_val=2, att_dim=8, feature_dim=16, samples_per_class=12
    )
    write_synthetic_xlsa17(root, "SYN", cfg)
    return load_xlsa17(root, "SYN")


def _cfg(base, use_dsp=True, **kw):
    kw.setdefault("enhance", "v2sm" if use_dsp else "none")
    return DSPConfig(
        dataset="SYN", base=base, feature_dim=16, att_dim=8, hidden_dim=32, batch_size=16,
        critic_iter=2, syn_num=10, classifier_epochs=2, pretrain_cls_epochs=1,
        use_dsp=use_dsp, **kw,
    )  # fmt: skip


def _trainer(path, **kw):
    return TrainerConfig(output_dir=str(path), device="cpu", log_every=1000, **kw)


@pytest.mark.parametrize("base", ["clswgan", "tfvaegan", "free"])
def test_two_epoch_pipeline_per_base(base, tiny_data, tmp_path):
    result = fit_dsp(_cfg(base), _trainer(tmp_path / "run", epochs=2), tiny_data)
    for key in ("U", "S", "H", "val_H", "best_H"):
        assert math.isfinite(result.final[key]), key
    assert (tmp_path / "run" / "dsp_checkpoint.pt").is_file()
    assert len(result.history) == 2


def test_run_folder_is_not_overwritten_and_resume_finishes(tiny_data, tmp_path):
    cfg = _cfg("clswgan", use_dsp=False)
    fit_dsp(cfg, _trainer(tmp_path / "run", epochs=1), tiny_data)
    with pytest.raises(RunFolderError):
        fit_dsp(cfg, _trainer(tmp_path / "run", epochs=1), tiny_data)
    again = fit_dsp(cfg, _trainer(tmp_path / "run", epochs=1, resume=True), tiny_data)
    assert again.nothing_to_do
    more = fit_dsp(cfg, _trainer(tmp_path / "run", epochs=2, resume=True), tiny_data)
    assert [h["epoch"] for h in more.history] == [1, 2]
    with pytest.raises(RunFolderError, match="alpha"):
        fit_dsp(
            cfg.replace(alpha=0.2), _trainer(tmp_path / "run", epochs=3, resume=True), tiny_data
        )


def test_dsp_checkpoint_round_trip(tiny_data, tmp_path):
    result = fit_dsp(_cfg("tfvaegan"), _trainer(tmp_path / "run", epochs=1), tiny_data)
    model, base = load_dsp_checkpoint(tmp_path / "run" / "dsp_checkpoint.pt")
    for a, b in zip(result.model.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
    raw = torch.load(tmp_path / "run" / "dsp_checkpoint.pt", weights_only=True)
    assert {"netG", "netD", "netV2SM", "netVOPE", "A", "Z"} <= set(raw)
    chosen, records = evaluate_model(model, base, tiny_data, seed=0)
    assert len(records) == 2 and "H" in chosen


def test_oracle_enhance_reads_the_label_and_v2sm_does_not():
    from dsp_zsl.train import _enhance

    torch.manual_seed(0)
    cfg = _cfg("clswgan", enhance="oracle", allow_label_leak=True)
    protos = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    model, base = build_dsp_model(cfg, protos, torch.tensor([0, 1, 3]), torch.tensor([2, 4]))
    model.eval()
    x, y = torch.rand(4, 16), torch.tensor([2, 4, 2, 0])
    with torch.no_grad():
        leaked = _enhance(model, base, x, y, "oracle")[:, 16:]
        torch.testing.assert_close(leaked, model.generator.netVOPE(protos)[y])
        free = _enhance(model, base, x, None, "v2sm")[:, 16:]
        torch.testing.assert_close(free, model.generator.netVOPE(model.generator.netV2SM(x)))


def _official_layout(model, base_name):
    """State dicts as the baselines' scripts save them (module. prefixes, beside epoch/args)."""
    from dsp_zsl.convert import BASELINE_NETS

    out = {"epoch": 7, "args": {"dataset": "CUB"}}
    for side_name, names in BASELINE_NETS[base_name].items():
        side = model.generator if side_name == "generator" else model.critic
        for name in names:
            sd = getattr(side, name).state_dict()
            out[name] = {f"module.{k}": torch.randn_like(v) for k, v in sd.items()}
    return out


@pytest.mark.parametrize("base", ["clswgan", "tfvaegan", "free"])
def test_baseline_networks_load_by_name(base, tmp_path):
    cfg = DSPConfig(base=base, feature_dim=16, att_dim=8, hidden_dim=32)
    protos = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    model, _ = build_dsp_model(cfg, protos, torch.tensor([0, 1, 3]), torch.tensor([2, 4]))
    saved = _official_layout(model, base)
    torch.save(saved, tmp_path / "nets.pth")
    nets = read_baseline_file(tmp_path / "nets.pth")
    loaded = load_baseline_nets(model, nets)
    assert "netG" in loaded and "netD" in loaded
    torch.testing.assert_close(model.generator.netG.fc1.weight, saved["netG"]["module.fc1.weight"])
    nets.pop("netD")
    with pytest.raises(ValueError, match="netD"):
        load_baseline_nets(model, nets)


def test_mismatched_baseline_shapes_are_reported(tmp_path):
    cfg = DSPConfig(base="clswgan", feature_dim=16, att_dim=8, hidden_dim=32)
    protos = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    model, _ = build_dsp_model(cfg, protos, torch.tensor([0, 1, 3]), torch.tensor([2, 4]))
    bad = {"netG": {"fc1.weight": torch.zeros(3, 3)}, "netD": {}, "netCls": {}}
    with pytest.raises(ValueError):
        load_baseline_nets(model, bad)


def test_non_finite_critic_losses_stop_the_run(tiny_data, tmp_path):
    import dataclasses

    import numpy as np

    from papers_shared.trainer import NonFiniteLossError

    bad = dataclasses.replace(tiny_data, train_x=np.full_like(tiny_data.train_x, np.nan))
    with pytest.raises(NonFiniteLossError, match="non-finite critic"):
        fit_dsp(_cfg("clswgan", use_dsp=False), _trainer(tmp_path / "run", max_nonfinite=2), bad)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="in our miniature runs DSP does not beat its base (README, demo section); this "
    "test turns red (XPASS) if that changes",
)
def test_dsp_evolved_prototypes_move_toward_visual_centres(tmp_path):
    """The paper's mechanism on generated data: after a short DSP run, VOPE(a_u) is closer than
    a_u to the class means of V2SM(real unseen features), and unseen ZSL accuracy with DSP is at
    least the base's on the same seed."""
    syn = SyntheticZSLConfig(num_seen=20, num_unseen=5, num_val=2, att_dim=12, feature_dim=24,
                             samples_per_class=30, seed=3)  # fmt: skip
    write_synthetic_xlsa17(tmp_path, "SYN", syn)
    data = load_xlsa17(tmp_path, "SYN")
    accs = {}
    for use_dsp in (False, True):
        cfg = DSPConfig(
            dataset="SYN", base="tfvaegan", feature_dim=24, att_dim=12, hidden_dim=64,
            batch_size=32, lr=1e-3, dsp_lr=1e-3, feed_lr=1e-3, gamma_d=1.0, gamma_g=1.0,
            syn_num=40, classifier_epochs=10, gzsl=False, use_dsp=use_dsp,
            enhance="v2sm" if use_dsp else "none",
        )  # fmt: skip
        run = fit_dsp(cfg, _trainer(tmp_path / f"r{use_dsp}", epochs=6, seed=3), data)
        accs[use_dsp] = run.final["Acc"]
        if use_dsp:
            gen = run.model.generator.eval()
            with torch.no_grad():
                x = torch.as_tensor(data.test_unseen_x)
                y = torch.as_tensor(data.test_unseen_y)
                mapped = gen.netV2SM(x)
                centres = torch.stack([mapped[y == c].mean(0) for c in gen.bank.unseen])
                a_u = gen.bank.A[gen.bank.unseen]
                evolved = gen.netVOPE(a_u)
            moved = (evolved - centres).norm(dim=1).mean() < (a_u - centres).norm(dim=1).mean()
    assert moved and accs[True] >= accs[False]
