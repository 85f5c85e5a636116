"""RIDG in DomainBed form: update/predict, frozen BN, heads, state dicts, official key layout."""

from __future__ import annotations

import pytest
import torch
from ridg import RIDG, naive_rationale_loss

from papers_shared.dg import ERM, get_algorithm_class, hparam_space, resolve_hparams

SMALL = {"cnn_width": 8, "batch_size": 4}


def _hparams(dataset: str = "RotatedDigits", **overrides):
    return resolve_hparams(hparam_space(RIDG, dataset), overrides={**SMALL, **overrides})


def _minibatches(n_domains: int = 2, b: int = 4, shape=(1, 16, 16), k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(b, *shape, generator=g), torch.randint(0, k, (b,), generator=g))
        for _ in range(n_domains)
    ]


def test_registered_and_hparams_follow_the_official_registry():
    assert get_algorithm_class("RIDG") is RIDG
    defaults = resolve_hparams(hparam_space(RIDG, "PACS"))
    assert defaults["momentum"] == 0.001 and defaults["ridg_reg"] == 0.01
    assert defaults["resnet18"] is True and defaults["lr"] == 5e-5
    for hseed in range(1, 6):
        drawn = resolve_hparams(hparam_space(RIDG, "PACS"), hparams_seed=hseed, trial_seed=0)
        assert 1e-4 <= drawn["momentum"] <= 1e-1
        assert 1e-2 <= drawn["ridg_reg"] <= 1e-1
        erm = resolve_hparams(hparam_space(ERM, "PACS"), hparams_seed=hseed, trial_seed=0)
        assert drawn["lr"] == erm["lr"]  # adding RIDG's names leaves the shared draws unchanged


def test_update_returns_losses_and_changes_weights():
    torch.manual_seed(0)
    algo = RIDG((1, 16, 16), 3, 2, _hparams())
    before = algo.classifier.weight.detach().clone()
    out = algo.update(_minibatches())
    assert set(out) == {"loss", "ce", "invariance"}
    assert out["loss"] == pytest.approx(out["ce"] + 0.01 * out["invariance"], rel=1e-5)
    assert not torch.equal(before, algo.classifier.weight)
    assert algo.invariance.initialised.any()
    assert algo.invariance.bank.grad_fn is None


def test_predict_is_the_erm_forward_and_ignores_the_bank():
    torch.manual_seed(0)
    algo = RIDG((1, 16, 16), 3, 2, _hparams()).eval()
    x = torch.randn(5, 1, 16, 16)
    out = algo.predict(x)
    torch.testing.assert_close(out, algo.classifier(algo.featurizer(x)))
    algo.invariance.bank.fill_(123.0)
    torch.testing.assert_close(algo.predict(x), out)


def test_invariance_term_alone_reaches_featurizer_and_weight_but_not_bias():
    torch.manual_seed(0)
    algo = RIDG((1, 16, 16), 3, 2, _hparams(momentum=0.5))
    mbs = _minibatches()
    algo.update(mbs)
    x = torch.cat([m[0] for m in mbs])
    y = torch.cat([m[1] for m in mbs])
    algo.zero_grad()
    algo.invariance(algo.featurizer(x), algo.classifier, y).backward()
    assert algo.classifier.weight.grad.abs().sum() > 0
    assert algo.featurizer.conv1.weight.grad.abs().sum() > 0
    assert algo.classifier.bias.grad is None


def test_single_and_double_forward_agree_without_dropout():
    losses = []
    for double in (False, True):
        torch.manual_seed(0)
        algo = RIDG((1, 16, 16), 3, 2, _hparams(ridg_double_forward=double))
        losses.append(algo.update(_minibatches())["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_closed_form_and_naive_paths_train_identically():
    weights = []
    for closed in (True, False):
        torch.manual_seed(0)
        algo = RIDG((1, 16, 16), 3, 2, _hparams(ridg_closed_form=closed, momentum=0.3))
        for seed in range(3):
            algo.update(_minibatches(seed=seed))
        weights.append(algo.classifier.weight.detach())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-6)


def test_nonlinear_head_is_refused():
    with pytest.raises(ValueError, match="linear classifier"):
        RIDG((1, 16, 16), 3, 2, _hparams(nonlinear_classifier=True))


def test_unknown_variant_reduction_or_bank_dtype_is_refused():
    for key, value in [("ridg_variant", "x"), ("ridg_reduction", "x"), ("ridg_bank_dtype", "x")]:
        with pytest.raises(ValueError, match="must be one of"):
            RIDG((1, 16, 16), 3, 2, _hparams(**{key: value}))


def test_state_dict_round_trip_restores_the_bank_and_a_missing_bank_restarts_empty():
    torch.manual_seed(0)
    algo = RIDG((1, 16, 16), 3, 2, _hparams())
    algo.update(_minibatches())
    state = algo.state_dict()
    assert {"invariance.bank", "invariance.initialised"} <= set(state)
    fresh = RIDG((1, 16, 16), 3, 2, _hparams())
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.invariance.bank, algo.invariance.bank)
    assert torch.equal(fresh.invariance.initialised, algo.invariance.initialised)
    without = {k: v for k, v in state.items() if not k.startswith("invariance.")}
    algo.load_state_dict(without)  # strict otherwise
    assert not algo.invariance.initialised.any()
    assert torch.count_nonzero(algo.invariance.bank) == 0
    with pytest.raises(RuntimeError, match="Unexpected key"):
        fresh.load_state_dict({**state, "extra.weight": torch.zeros(1)})


def test_official_resnet18_model_dict_loads_strictly():
    hp = resolve_hparams(
        hparam_space(ERM, "PACS"), overrides={"resnet18": True, "resnet_pretrained": False}
    )
    erm = ERM((3, 224, 224), 7, 3, hp)
    official = erm.state_dict()  # the official fork's layout: same attribute names as ERM
    assert len(official) == 244
    assert any(k.startswith("featurizer.network.layer4.") for k in official)
    assert {"classifier.weight", "network.1.weight", "network.0.network.conv1.weight"} <= set(
        official
    )
    torch.manual_seed(1)
    algo = RIDG((3, 224, 224), 7, 3, {**hp, "resnet18": True, "resnet_pretrained": False})
    result = algo.load_state_dict(official)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(algo.classifier.weight, official["classifier.weight"])
    torch.testing.assert_close(
        algo.featurizer.network.layer4[1].bn2.running_var,
        official["featurizer.network.layer4.1.bn2.running_var"],
    )
    assert algo.featurizer.n_outputs == 512


def test_frozen_batchnorm_running_stats_while_affine_trains():
    hp = _hparams("PACS", resnet_pretrained=False, resnet18=True, lr=1e-2)
    torch.manual_seed(0)
    algo = RIDG((3, 72, 72), 3, 2, hp)
    algo.train()
    bn = algo.featurizer.network.bn1
    mean, weight = bn.running_mean.clone(), bn.weight.detach().clone()
    algo.update(_minibatches(shape=(3, 72, 72), b=2))
    assert torch.equal(bn.running_mean, mean)
    assert not torch.equal(bn.weight, weight)


def test_resnet50_parameter_count_matches_the_official_class():
    hp = _hparams("PACS", resnet_pretrained=False, resnet18=False)
    algo = RIDG((3, 224, 224), 7, 3, hp)
    assert algo.featurizer.n_outputs == 2048
    assert tuple(algo.invariance.bank.shape) == (7, 7, 2048)
    assert sum(p.numel() for p in algo.network.parameters()) == 23_508_032 + 2049 * 7


def test_the_loss_used_in_update_matches_the_naive_form():
    torch.manual_seed(0)
    algo = RIDG((1, 16, 16), 3, 2, _hparams(momentum=0.2))
    algo.update(_minibatches(seed=0))
    mbs = _minibatches(seed=1)
    x = torch.cat([m[0] for m in mbs])
    y = torch.cat([m[1] for m in mbs])
    with torch.no_grad():
        z = algo.featurizer(x)
        algo.invariance.update_bank(z, algo.classifier.weight, y)
        expected = naive_rationale_loss(z, algo.classifier.weight, y, algo.invariance.bank)
        got = algo.invariance.distance(z, algo.classifier.weight, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_official_style_checkpoint_file_without_bank_loads_through_load_algorithm(tmp_path):
    from papers_shared.dg import load_algorithm

    torch.manual_seed(0)
    hp = _hparams()
    algo = RIDG((1, 16, 16), 3, 2, hp)
    algo.update(_minibatches())
    model_dict = {k: v for k, v in algo.state_dict().items() if not k.startswith("invariance.")}
    checkpoint = {
        "args": {"algorithm": "RIDG", "dataset": "RotatedDigits"},
        "model_input_shape": [1, 16, 16],
        "model_num_classes": 3,
        "model_num_domains": 2,
        "model_hparams": hp,
        "model_dict": model_dict,
    }
    torch.save(checkpoint, tmp_path / "model.pkl")
    loaded = load_algorithm(tmp_path / "model.pkl")
    assert isinstance(loaded, RIDG)
    x = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(loaded.eval().predict(x), algo.eval().predict(x))
    assert not loaded.invariance.initialised.any()


@pytest.mark.parametrize("variant, shape", [("feature", (3, 16)), ("logit", (3, 3))])
def test_ablation_variant_hparam_reaches_the_loss(variant, shape):
    algo = RIDG((1, 16, 16), 3, 2, _hparams(ridg_variant=variant))
    assert algo.invariance.variant == variant
    assert tuple(algo.invariance.bank.shape) == shape
    assert set(algo.update(_minibatches())) == {"loss", "ce", "invariance"}


def test_tiny_ridg_run_learns_the_held_out_domain_well_above_chance():
    from papers_shared.dg import TrainConfig, train

    cfg = TrainConfig(
        dataset="RotatedDigits",
        algorithm="RIDG",
        test_envs=[0],
        hparams={"cnn_width": 8, "batch_size": 16, "ridg_reg": 0.1},
        steps=40,
        checkpoint_freq=39,
        output_dir=None,
        progress=False,
    )
    records = train(cfg)
    first, last = records[0], records[-1]
    assert last["env0_in_acc"] > first["env0_in_acc"] + 0.1
    assert last["env0_in_acc"] > 0.25  # 10 classes: chance is 0.1
    assert last["invariance"] > 0


def test_bf16_autocast_update_keeps_the_bank_and_invariance_in_float32():
    torch.manual_seed(0)
    algo = RIDG((3, 28, 28), 2, 2, {"lr": 1e-3, "weight_decay": 0.0, "cnn_width": 8})
    algo.set_precision("bf16", torch.device("cpu"))
    seen = []
    algo.classifier.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    batches = [(torch.randn(4, 3, 28, 28), torch.tensor([0, 1, 0, 1])) for _ in range(2)]
    values = algo.update(batches)
    assert seen == [torch.bfloat16]  # the training forward ran under autocast
    assert algo.invariance.bank.dtype == torch.float32 and algo.invariance.initialised.all()
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
