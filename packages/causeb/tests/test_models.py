import copy

import pytest
import torch
from causeb import CauseEB, split_resnet
from causeb.losses import independence_loss
from causeb.models import DomainMLP, build_projector, projector_width
from torch import nn

from papers_shared.counting import count_flops, count_parameters
from papers_shared.dg import hparam_space, resolve_hparams

DOMAIN_PARTS = ("featurizer_domains", "classifier_domains", "cdpl")
RESNET_SHAPE = (3, 72, 72)
TINY_RESNET = {"resnet_pretrained": False, "resnet18": True, "lr": 1e-3}
SMALL_SHAPE = (2, 16, 16)
SMALL = {"cnn_width": 16}


def _params(module: nn.Module) -> int:
    return count_parameters(module).total


def test_shapes_resnet18(resnet_causeb):
    x = torch.randn(2, *RESNET_SHAPE)
    h = resnet_causeb.base(x)
    assert h.shape == (2, 64, 18, 18)
    z = resnet_causeb.featurizer_class(h)
    assert z.shape == (2, 512)
    assert resnet_causeb.classifier_domains(z).shape == (2, 3)
    assert resnet_causeb.predict(x).shape == (2, 5)


def test_resnet50_when_resnet18_is_false():
    algorithm = CauseEB(RESNET_SHAPE, 5, 3, {**TINY_RESNET, "resnet18": False})
    x = torch.randn(1, *RESNET_SHAPE)
    assert algorithm.base(x).shape == (1, 256, 18, 18)
    assert algorithm.featurizer_class(algorithm.base(x)).shape == (1, 2048)
    assert projector_width(2048) == 2048
    assert _params(algorithm.featurizer_class) == 23_282_688


def test_parameter_counts_follow_the_formulas(resnet_causeb):
    algorithm, num_classes, num_domains, width, depth = resnet_causeb, 5, 3, 256, 3
    d, h = 512, projector_width(512)
    assert _params(algorithm.base) == 157_504
    assert (
        _params(algorithm.featurizer_class) == _params(algorithm.featurizer_domains) == 11_019_008
    )
    mlp = (
        d * width
        + width
        + (depth - 2) * (width * width + width)
        + width * num_domains
        + num_domains
    )
    assert _params(algorithm.classifier_domains) == mlp
    assert _params(algorithm.classifier_class) == d * num_classes + num_classes
    assert _params(algorithm.cdpl) == d * h + h + h * h + h + h * d + d + 2 * (2 * h + d)
    total = 157_504 + 2 * 11_019_008 + mlp + d * num_classes + num_classes
    optimised = sum(p.numel() for g in algorithm.optimizer.param_groups for p in g["params"])
    assert optimised == total
    assert _params(algorithm) == total + _params(algorithm.cdpl)


@pytest.mark.parametrize("width,depth,num_domains", [(256, 3, 3), (64, 5, 5)])
def test_domain_mlp_parameter_formula(width, depth, num_domains):
    mlp = DomainMLP(512, num_domains, width, depth)
    hidden = (depth - 2) * (width * width + width)
    assert _params(mlp) == 512 * width + width + hidden + width * num_domains + num_domains


def test_trunks_start_from_the_same_weights_but_are_independent(resnet_causeb):
    pairs = zip(
        resnet_causeb.featurizer_class.parameters(), resnet_causeb.featurizer_domains.parameters()
    )
    for a, b in pairs:
        assert torch.equal(a, b) and a is not b


def test_projector_is_excluded_from_the_optimiser_unless_asked():
    faithful = CauseEB(SMALL_SHAPE, 5, 3, SMALL)
    trained = CauseEB(SMALL_SHAPE, 5, 3, {**SMALL, "train_projector": True})
    for algorithm, expected in ((faithful, False), (trained, True)):
        in_optimiser = {id(p) for g in algorithm.optimizer.param_groups for p in g["params"]}
        assert all((id(p) in in_optimiser) == expected for p in algorithm.cdpl.parameters())
        assert all(id(p) in in_optimiser for p in algorithm.featurizer_domains.parameters())


def test_update_freezes_bn2d_stats_trains_bn2d_affine_and_moves_projector_stats(make_batches):
    algorithm = CauseEB(RESNET_SHAPE, 5, 3, TINY_RESNET)
    algorithm.train()
    before = copy.deepcopy(algorithm.state_dict())
    projector_before = copy.deepcopy(algorithm.cdpl.state_dict())
    losses = algorithm.update(make_batches(per_domain=2))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    after = algorithm.state_dict()
    for name, module in algorithm.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert not module.training
            assert torch.equal(before[f"{name}.running_mean"], after[f"{name}.running_mean"])
            assert not torch.equal(before[f"{name}.weight"], after[f"{name}.weight"])
    assert not torch.equal(projector_before["1.running_mean"], algorithm.cdpl[1].running_mean)
    # Faithful quirk: the projector's weights never move.
    assert torch.equal(projector_before["0.weight"], algorithm.cdpl[0].weight)


def test_independence_loss_sends_no_gradient_to_the_domain_branch(resnet_causeb, make_batches):
    algorithm = resnet_causeb
    algorithm.zero_grad(set_to_none=True)
    x = torch.cat([xb for xb, _ in make_batches()])
    causal, domain = algorithm.features(x)
    independence_loss(causal, domain).backward()
    for part in DOMAIN_PARTS:
        grads = [p.grad for p in getattr(algorithm, part).parameters()]
        assert all(g is None or g.abs().sum() == 0 for g in grads), part
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in algorithm.featurizer_class.parameters()
    )
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in algorithm.base.parameters())
    algorithm.zero_grad(set_to_none=True)


def test_predict_ignores_domain_branch_projector_and_rng():
    algorithm = CauseEB(SMALL_SHAPE, 5, 3, {**SMALL, "resnet_dropout": 0.5}).eval()
    x = torch.randn(3, *SMALL_SHAPE)
    reference = algorithm.predict(x)
    with torch.no_grad():
        for part in DOMAIN_PARTS:
            for p in getattr(algorithm, part).parameters():
                p.add_(torch.randn_like(p))
    torch.manual_seed(123)
    torch.testing.assert_close(algorithm.predict(x), reference)


def test_dropout_is_active_in_training_only():
    algorithm = CauseEB(SMALL_SHAPE, 5, 3, {**SMALL, "resnet_dropout": 0.5})
    x = torch.randn(3, *SMALL_SHAPE)
    algorithm.train()
    assert not torch.allclose(algorithm.predict(x), algorithm.predict(x))
    algorithm.eval()
    torch.testing.assert_close(algorithm.predict(x), algorithm.predict(x))


def test_export_is_a_plain_resnet_with_identical_outputs_and_flops(resnet_causeb):
    import torchvision

    algorithm = resnet_causeb.eval()
    exported = algorithm.export()
    assert type(exported) is torchvision.models.ResNet
    x = torch.randn(2, *RESNET_SHAPE)
    torch.testing.assert_close(exported(x), algorithm.predict(x), atol=1e-5, rtol=1e-5)
    plain = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    assert count_flops(exported, x).total == count_flops(plain, x).total
    assert count_flops(algorithm.predict, x).total == count_flops(plain, x).total
    assert _params(exported) == _params(plain)
    algorithm.train()


def test_late_branching_export_folds_the_projection():
    hp = {"cnn_width": 16, "split_after": "layer4"}
    algorithm = CauseEB((2, 16, 16), 3, 2, hp)
    with torch.no_grad():
        algorithm.featurizer_class.projection.weight.add_(0.1 * torch.randn(32, 32))
    algorithm.eval()
    x = torch.randn(4, 2, 16, 16)
    torch.testing.assert_close(algorithm.export()(x), algorithm.predict(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "split_after,stem_channels", [("layer1", 16), ("block2", 32), ("layer4", 32)]
)
def test_small_cnn_split_positions(split_after, stem_channels):
    algorithm = CauseEB((1, 16, 16), 10, 5, {"cnn_width": 16, "split_after": split_after})
    x = torch.randn(3, 1, 16, 16)
    assert algorithm.base(x).shape[1] == stem_channels
    assert algorithm.predict(x).shape == (3, 10)
    algorithm.eval()
    torch.testing.assert_close(algorithm.export()(x), algorithm.predict(x), atol=1e-5, rtol=1e-5)


def test_split_resnet_accepts_timm_resnets():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False)
    stem, trunk = split_resnet(model, "layer2")
    x = torch.randn(2, 3, 32, 32)
    assert stem(x).shape == (2, 128, 4, 4)
    assert trunk(stem(x)).shape == (2, 512)
    reference = model.eval().forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(trunk.eval()(stem.eval()(x)), reference)


def test_bad_split_name_is_a_clear_error():
    import torchvision

    with pytest.raises(ValueError, match="split_after"):
        split_resnet(torchvision.models.resnet18(weights=None), "layer9")
    with pytest.raises(ValueError, match="split_after"):
        CauseEB((1, 16, 16), 5, 3, {"split_after": "conv7"})


def test_rds_batch_of_one_fails_clearly_in_update():
    algorithm = CauseEB((1, 16, 16), 10, 1, {"cnn_width": 16})
    with pytest.raises(ValueError, match="at least 2"):
        algorithm.update([(torch.randn(1, 1, 16, 16), torch.tensor([3]))])


def test_domain_mlp_layout_and_depth_check():
    mlp = DomainMLP(8, 3, width=4, depth=4)
    assert [n for n, _ in mlp.named_parameters()] == [
        "input.weight",
        "input.bias",
        "hiddens.0.weight",
        "hiddens.0.bias",
        "hiddens.1.weight",
        "hiddens.1.bias",
        "output.weight",
        "output.bias",
    ]
    with pytest.raises(ValueError, match="mlp_depth"):
        DomainMLP(8, 3, depth=1)


def test_projector_layout():
    projector = build_projector(512)
    linear = [i for i, m in enumerate(projector) if isinstance(m, nn.Linear)]
    norms = [i for i, m in enumerate(projector) if isinstance(m, nn.BatchNorm1d)]
    assert linear == [0, 3, 6] and norms == [1, 4, 7]
    assert projector[0].out_features == 1024


def test_hparam_registry_defaults_and_random_draws():
    space = hparam_space(CauseEB, "PACS")
    defaults = resolve_hparams(space, 0, 0)
    assert (defaults["alpha"], defaults["beta"], defaults["lr"], defaults["batch_size"]) == (
        1.0,
        0.3,
        5e-5,
        32,
    )
    assert (defaults["mlp_width"], defaults["mlp_depth"], defaults["mlp_dropout"]) == (256, 3, 0.0)
    assert defaults["resnet18"] is True and defaults["train_projector"] is False
    for seed in range(1, 6):
        drawn = resolve_hparams(space, seed, 0)
        assert 0.1 <= drawn["alpha"] <= 1.0
        assert 0.03 <= drawn["beta"] <= 0.3
        assert 10**-5 <= drawn["lr"] <= 10**-3.5
        assert 8 <= drawn["batch_size"] <= 45
        assert drawn["mlp_depth"] in (3, 4, 5)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        resolve_hparams(space, 0, 0, {"alhpa": 1.0})


def test_stacked_trunk_pass_equals_separate_passes(resnet_causeb):
    algorithm = resnet_causeb.train()  # train mode: BN2d must stay frozen for this to hold
    generator_seed = 7
    x = torch.randn(4, *RESNET_SHAPE)
    algorithm.rds_generator = torch.Generator().manual_seed(generator_seed)
    (zc, zc_aug), (zd, zd_aug) = algorithm.features(x)
    algorithm.rds_generator = torch.Generator().manual_seed(generator_seed)
    h = algorithm.base(x)
    h_aug = algorithm.rds(h)
    algorithm.rds_generator = None
    torch.testing.assert_close(zc, algorithm.featurizer_class(h), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(zc_aug, algorithm.featurizer_class(h_aug), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(zd_aug, algorithm.featurizer_domains(h_aug), atol=1e-4, rtol=1e-4)


def test_bf16_autocast_update_runs_with_float32_losses(make_batches):
    torch.manual_seed(0)
    algorithm = CauseEB(SMALL_SHAPE, 3, 2, {**SMALL, "rds_draws": 200})
    algorithm.set_precision("bf16", torch.device("cpu"))
    seen = []
    algorithm.featurizer_class.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    values = algorithm.update(make_batches(2, 6, SMALL_SHAPE, 3))
    assert seen == [torch.bfloat16] and all(
        torch.isfinite(torch.tensor(v)) for v in values.values()
    )
    assert all(p.dtype == torch.float32 for p in algorithm.parameters())
