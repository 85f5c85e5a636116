"""timm's model surface on every registered variant, at tiny widths: classifier reset and
pooling, forward_intermediates / prune_intermediate_layers, features_only, grad checkpointing,
TorchScript and torch.fx. (timm's own test file runs through tools/timm_conformance.py.)"""

from __future__ import annotations

import copy

import pytest
import torch

timm = pytest.importorskip("timm")
import groupmixformer.models  # noqa: E402,F401  (registers the names)

NAMES = timm.list_models("groupmixformer_*")
TINY = {"embed_dims": (40, 40, 80, 80), "depths": (1, 1, 1, 1)}
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
GRIDS = [(16, 16), (8, 8), (4, 4), (2, 2)]


def _tiny(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **TINY, **kwargs).eval()


def test_all_five_variants_are_registered():
    assert (
        sorted(f"groupmixformer_{v}" for v in ("base", "large", "miny", "small", "tiny")) == NAMES
    )


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_pooling_and_head(name):
    model = _tiny(name, num_classes=7)
    with torch.no_grad():
        assert model(X).shape == (2, 7)
        pre = model.forward_head(model.forward_features(X), pre_logits=True)
        model.reset_classifier(0)
        torch.testing.assert_close(model(X), pre)  # pooled features, pooling kept
        model.reset_classifier(0, "")
        assert model(X).shape == (2, 80, 2, 2)  # no pooling: the norm4 map
        model.reset_classifier(5, "avg")
        assert model(X).shape == (2, 5)
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(0, "max")


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_follows_device_dtype_and_mode(name):
    model = _tiny(name).to(torch.float64).train()
    model.reset_classifier(3)
    assert model.head.weight.dtype == torch.float64 and model.head.training


@pytest.mark.parametrize("name", NAMES)
def test_no_pooling_from_the_constructor(name):
    model = _tiny(name, num_classes=0, global_pool="")
    with torch.no_grad():
        assert model(X).shape == (2, 80, 2, 2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("indices", "taken"),
    [(None, [0, 1, 2, 3]), (2, [2, 3]), ([0, 2], [0, 2]), ([-1], [3])],
    ids=["all", "last-2", "list", "negative"],
)
def test_forward_intermediates_take_indices(name, indices, taken):
    model = _tiny(name)
    with torch.no_grad():
        final, maps = model.forward_intermediates(X, indices=indices)
        only = model.forward_intermediates(X, indices=indices, intermediates_only=True)
        features = model.forward_features(X)
    torch.testing.assert_close(final, features)
    assert [tuple(m.shape[2:]) for m in maps] == [GRIDS[i] for i in taken]
    for a, b in zip(maps, only):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates_stop_early_and_nhwc(name):
    model = _tiny(name)
    with torch.no_grad():
        final, maps = model.forward_intermediates(X, indices=[1], stop_early=True)
        nhwc = model.forward_intermediates(
            X, indices=[1], output_fmt="NHWC", intermediates_only=True
        )
    assert final.shape == (2, 40, 8, 8)
    torch.testing.assert_close(nhwc[0], maps[0].permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(X, output_fmt="NLC")


@pytest.mark.parametrize("name", NAMES)
def test_bad_intermediate_index_raises(name):
    with pytest.raises(AssertionError, match="out of range"):  # timm's feature_take_indices
        _tiny(name).forward_intermediates(X, indices=[4])


@pytest.mark.parametrize("name", NAMES)
def test_prune_intermediate_layers_keeps_the_taps(name):
    model = _tiny(name)
    with torch.no_grad():
        taps = model.forward_intermediates(X, intermediates_only=True)
        pruned = copy.deepcopy(model)
        kept = pruned.prune_intermediate_layers([0, 2])
        assert kept == [0, 2]
        maps = pruned.forward_intermediates(X)[1]  # default indices: every remaining stage
        assert len(maps) == 3
        selected = pruned.forward_intermediates(X, indices=kept, intermediates_only=True)
    torch.testing.assert_close(selected[0], taps[0])
    torch.testing.assert_close(selected[1], taps[2])
    assert not [k for k in pruned.state_dict() if k.startswith(("norm4.", "head."))]


@pytest.mark.parametrize("name", NAMES)
def test_prune_without_head_at_the_last_stage_keeps_the_output(name):
    model = _tiny(name)
    pruned = copy.deepcopy(model)
    pruned.prune_intermediate_layers([3], prune_head=False)
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), model(X))


@pytest.mark.parametrize("name", NAMES)
def test_features_only_gives_strides_4_to_32(name):
    torch.manual_seed(0)
    model = timm.create_model(name, features_only=True, out_indices=(1, 2, 3), **TINY).eval()
    assert model.feature_info.reduction() == [8, 16, 32]
    assert model.feature_info.channels() == [40, 80, 80]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 40, 8, 12), (1, 80, 4, 6), (1, 80, 2, 3)]


@pytest.mark.parametrize("name", NAMES)
def test_grad_checkpointing_gives_the_same_output_and_gradients(name):
    model = _tiny(name, drop_path_rate=0.0).train()
    for module in model.modules():  # batch statistics only, so both passes see the same BN
        if isinstance(module, torch.nn.BatchNorm2d):
            module.track_running_stats = False
            module.running_mean = module.running_var = None
    plain = model(X)
    plain.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    checkpointed = model(X)
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_matches_eager(name):
    with timm.set_scriptable(True):
        model = _tiny(name)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(X), model(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_fx_trace_matches_eager(name, train):
    from timm.layers import create_feature_extractor, get_graph_node_names

    model = _tiny(name, drop_path_rate=0.0).train(train)
    nodes = get_graph_node_names(model)[1 if not train else 0]
    extractor = create_feature_extractor(model, return_nodes=[nodes[-1]])
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        eager = model(X)
    model.load_state_dict(state)  # the traced pass starts from the same BN statistics
    out = list(extractor(X).values())[0]
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    if train:
        out.sum().backward()
        assert all(p.grad is not None for p in extractor.parameters())
