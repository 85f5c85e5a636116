"""Module sizes against the paper-code figures, init, gradient routing and the mixed condition."""

from __future__ import annotations

import pytest
import torch
from dsp_zsl.config import DSPConfig
from dsp_zsl.models import V2SM, VOPE, PrototypeBank, create_base, list_bases
from dsp_zsl.models.bases import AttDec, Critic, Encoder, FeatureRefinement, Feedback, Generator
from dsp_zsl.train import build_dsp_model

from papers_shared.counting import count_parameters

# (att_dim, seen classes) -> module sizes of the official TF-VAEGAN / FREE modules and DSP's
PARAMS = {
    (312, 150): dict(G=10_950_656, D=9_674_753, E=12_617_184, F=33_562_624, Dec=9_670_968,
                     FR=10_996_495, V2SM=37_032_248, VOPE=829_374),
    (102, 645): dict(G=9_230_336, D=8_814_593, E=9_688_104, F=33_562_624, Dec=8_810_598,
                     FR=9_295_030, V2SM=36_816_998, VOPE=88_969),
    (85, 40): dict(G=9_091_072, D=8_744_961, E=9_466_424, F=33_562_624, Dec=8_740_949,
                   FR=9_092_720, V2SM=36_799_573, VOPE=61_901),
}  # fmt: skip


@pytest.mark.parametrize(("att_dim", "num_seen"), list(PARAMS))
def test_parameter_counts_per_dataset(att_dim, num_seen):
    want = PARAMS[(att_dim, num_seen)]
    with torch.device("meta"):
        got = dict(
            G=Generator(2048, att_dim, 4096),
            D=Critic(2048, att_dim, 4096),
            E=Encoder(2048, att_dim, 4096),
            F=Feedback(4096),
            Dec=AttDec(2048, att_dim, 4096),
            FR=FeatureRefinement(2048, att_dim, 4096, num_seen),
            V2SM=V2SM(2048, att_dim, 4096),
            VOPE=VOPE(att_dim),
        )
    assert {k: count_parameters(m).total for k, m in got.items()} == want


def test_clswgan_generator_same_size_as_tfvaegan():
    cfg = DSPConfig(base="clswgan", att_dim=312)
    with torch.device("meta"):
        g = create_base("clswgan", cfg).build_generator()["netG"]
    assert count_parameters(g).total == PARAMS[(312, 150)]["G"]


def test_linear_init_std_002_bias_0():
    torch.manual_seed(0)
    m = Critic(512, 64, 1024)
    assert m.fc1.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert m.fc1.bias.abs().max().item() == 0.0


def test_unknown_base_lists_valid_names():
    with pytest.raises(ValueError, match="clswgan"):
        create_base("fvaegan", DSPConfig())
    assert list_bases() == ["clswgan", "free", "tfvaegan"]


def _tiny(base="tfvaegan", **kw):
    cfg = DSPConfig(base=base, feature_dim=16, att_dim=8, hidden_dim=32, **kw)
    torch.manual_seed(0)
    protos = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    model, b = build_dsp_model(cfg, protos, torch.tensor([0, 1, 3]), torch.tensor([2, 4]))
    return cfg, model, b


def test_gradient_routing_of_dsp_losses():
    cfg, model, base = _tiny()
    gen = model.generator
    y = torch.tensor([0, 1, 3, 0, 1, 3])
    from dsp_zsl import losses
    from torch.func import functional_call

    c = gen.conditions(y, refresh=True)
    assert not c.requires_grad  # conditions are detached
    fake = gen.netG(torch.randn(6, 8), c)
    params = {k: v.detach() for k, v in gen.netV2SM.named_parameters()}
    l_fake = losses.v2s_loss(functional_call(gen.netV2SM, params, (fake,)), c)
    l_fake.backward()
    assert gen.netG.fc1.weight.grad is not None and gen.netG.fc1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in gen.netV2SM.parameters())
    model.zero_grad(set_to_none=True)
    mapped = gen.netV2SM(fake.detach())
    l_vope = losses.vope_loss(gen.netVOPE(gen.bank.A[y]), mapped)
    l_vope.backward()
    assert all(p.grad is None for p in gen.netV2SM.parameters())
    assert all(p.grad is None for p in gen.netG.parameters())
    assert gen.netVOPE.linear1.weight.grad is not None


def test_full_generator_loss_leaves_critic_without_grad():
    cfg, model, base = _tiny()
    gen = model.generator
    loss, metrics = gen(torch.rand(4, 16), torch.tensor([0, 1, 3, 3]), model.critic, base)
    loss.backward()
    assert all(p.grad is None for p in model.critic.parameters())
    assert gen.netVOPE.linear1.weight.grad is not None
    assert gen.netV2SM.fc1.weight.grad is not None  # from the loss on real features
    assert {"v2s_real", "v2s_fake", "vope"} <= set(metrics)


def test_mixed_condition_extremes():
    _, model, _ = _tiny()
    gen = model.generator
    bank = gen.bank
    with torch.no_grad():
        assert torch.equal(bank.mixed_unseen(gen.netVOPE, 1.0), bank.A[bank.unseen])
        torch.testing.assert_close(
            bank.mixed_unseen(gen.netVOPE, 0.0), gen.netVOPE(bank.A[bank.unseen])
        )
    assert torch.equal(bank.mixed_unseen(None, 0.3), bank.A[bank.unseen])


def test_vope_and_v2sm_outputs_unit_rows_and_follow_dtype():
    v = VOPE(8).double()
    z = torch.randn(3, 8, dtype=torch.float64)
    out = v(z)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3, dtype=torch.float64))
    m = V2SM(16, 8, 32).to(torch.bfloat16)
    assert m(torch.rand(2, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_recurrent_evolution_iterates_z():
    _, model, _ = _tiny(evolve_mode="recurrent")
    gen = model.generator
    z0 = gen.bank.Z.clone()
    torch.testing.assert_close(z0, gen.bank.A[gen.bank.seen])
    z1 = gen.bank.evolve(gen.netVOPE, "recurrent").clone()
    z2 = gen.bank.evolve(gen.netVOPE, "recurrent").clone()
    with torch.no_grad():
        torch.testing.assert_close(z2, gen.netVOPE(z1))


def test_prototype_bank_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(C, d_a\)"):
        PrototypeBank(torch.randn(5), torch.tensor([0]), torch.tensor([1]))


def test_config_refuses_label_leak_without_flag():
    with pytest.raises(ValueError, match="leaks labels"):
        DSPConfig(enhance="oracle")
    assert DSPConfig(enhance="oracle", allow_label_leak=True).enhance == "oracle"
    with pytest.raises(ValueError, match="use_dsp"):
        DSPConfig(use_dsp=False)  # enhance defaults to v2sm, which needs DSP
    with pytest.raises(ValueError, match="unknown DSPConfig"):
        DSPConfig.from_dict({"alpah": 0.5})
    with pytest.raises(ValueError, match="alpha"):
        DSPConfig(alpha=1.5)


def test_enhanced_features_dimension():
    from dsp_zsl.train import _enhance

    cfg, model, base = _tiny(base="clswgan")
    x = torch.rand(3, 16)
    model.eval()
    assert _enhance(model, base, x, None, "v2sm").shape == (3, 16 + 8)
    assert _enhance(model, base, x, None, "none").shape == (3, 16)
    cfg, model, base = _tiny(base="tfvaegan")  # + AttDec hidden features, as TF-VAEGAN does
    assert _enhance(model, base, x, None, "v2sm").shape == (3, 16 + 32 + 8)


def test_residual_vope_starts_near_identity():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    near = VOPE(16, residual=True)(z)
    far = VOPE(16)(z)
    assert (near - z).norm(dim=1).max() < 0.1
    assert (far - z).norm(dim=1).mean() > 0.5
    assert count_parameters(VOPE(16, residual=True)).total == count_parameters(VOPE(16)).total
