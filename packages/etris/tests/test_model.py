import pytest
import torch


@pytest.mark.parametrize("kind", ["rn", "vit"])
def test_output_and_feature_shapes(kind, tiny, make_ids):
    model = tiny(kind).eval()
    image, ids = torch.randn(2, 3, 64, 64), make_ids()
    feats = model.forward_features(image, ids)
    if kind == "rn":
        assert [tuple(f.shape) for f in feats.feats] == [
            (2, 64, 8, 8),
            (2, 128, 4, 4),
            (2, 32, 2, 2),
        ]
    else:
        assert [tuple(f.shape) for f in feats.feats] == [
            (2, 48, 4, 4),
            (2, 48, 4, 4),
            (2, 32, 4, 4),
        ]
    assert feats.words.shape == (2, 8, 32)
    assert feats.state.shape == (2, 32)
    logits = model(image, ids)
    assert logits.shape == (2, 1, 16, 16)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("kind", ["rn", "vit"])
def test_only_adapters_and_positions_train_and_get_grads(kind, tiny, make_ids):
    model = tiny(kind).train()
    for name, param in model.named_parameters():
        expected = not name.startswith("backbone.") or "positional_embedding" in name
        assert param.requires_grad == expected, name
    model(torch.randn(2, 3, 64, 64), make_ids()).mean().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            if name.startswith(("bridger.", "neck.", "decoder.", "proj.")):
                assert param.grad is not None and torch.isfinite(param.grad).all(), name
        else:
            assert param.grad is None, name
    assert model.backbone.positional_embedding.grad.abs().sum() > 0
    # text rows beyond word_len get exactly zero gradient
    assert model.backbone.positional_embedding.grad[8:].abs().sum() == 0


def test_decoder_only_baseline_has_no_bridger(tiny, make_ids):
    model = tiny("rn", use_bridger=False)
    assert model.bridger is None
    assert model.parameter_counts()["bridger"] == 0
    assert model(torch.randn(1, 3, 64, 64), make_ids(1)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize(
    ("name", "bridger", "trainable", "frozen"),
    [
        ("etris_rn50", 1_942_080, 28_819_009, 103_964_513),
        ("etris_rn101", 1_942_080, 26_328_129, 120_595_809),
        ("etris_vit_b16", 598_592, 23_829_313, 149_430_017),
    ],
)
def test_full_size_parameter_counts(name, bridger, trainable, frozen):
    from etris.models import create_etris

    with torch.device("meta"):
        model = create_etris(name)
    counts = model.parameter_counts()
    assert counts["bridger"] == bridger
    assert counts["trainable"] == trainable
    assert counts["backbone_frozen"] == frozen


def test_full_size_shapes_and_positions_on_meta():
    from etris.models import create_etris

    with torch.device("meta"):
        vit = create_etris("etris_vit_b16")
        rn = create_etris("etris_rn50")
    assert tuple(vit.backbone.visual.positional_embedding.shape) == (677, 768)
    assert tuple(rn.backbone.visual.attnpool.positional_embedding.shape) == (50, 2048)
    with torch.device("meta"):
        feats = rn.forward_features(
            torch.empty(1, 3, 416, 416), torch.ones(1, 17, dtype=torch.long)
        )
        logits = rn(torch.empty(1, 3, 416, 416), torch.ones(1, 17, dtype=torch.long))
    assert [tuple(f.shape[1:]) for f in feats.feats] == [
        (512, 52, 52),
        (1024, 26, 26),
        (1024, 13, 13),
    ]
    assert tuple(logits.shape) == (1, 1, 104, 104)


def test_backbone_bn_train_mode_updates_stats_and_eval_option_keeps_them(tiny, make_ids):
    image, ids = torch.randn(2, 3, 64, 64), make_ids()
    for mode, should_change in (("train", True), ("eval", False)):
        model = tiny("rn", backbone_bn=mode).train()
        bn = model.backbone.visual.bn1
        before = bn.running_mean.clone()
        model(image, ids)
        assert bn.training == should_change
        assert (not torch.equal(before, bn.running_mean)) == should_change, mode
        assert model.neck.aggr[1].training  # the trainable heads' BN always trains


def test_connect_is_frozen_unless_asked(tiny):
    assert not tiny("rn").backbone.visual.attnpool.connect[0].weight.requires_grad
    model = tiny("rn", train_connect=True)
    assert model.backbone.visual.attnpool.connect[0].weight.requires_grad


def test_eval_is_deterministic(tiny, make_ids):
    model = tiny("rn")
    image, ids = torch.randn(2, 3, 64, 64), make_ids()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(image, ids), model(image, ids))


def test_float64_follows_input(tiny, make_ids):
    model = tiny("vit").double().eval()
    out = model(torch.randn(1, 3, 64, 64, dtype=torch.float64), make_ids(1))
    assert out.dtype == torch.float64


def test_bfloat16_autocast_runs(tiny, make_ids):
    model = tiny("rn").eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 64, 64), make_ids(1))
    assert torch.isfinite(out.float()).all()


def test_text_changes_the_mask(tiny, make_ids):
    model = tiny("vit").eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model(image, make_ids(1, seed=1))
        b = model(image, make_ids(1, seed=2))
    assert (a - b).abs().max() > 1e-4


def test_state_dict_round_trip(tiny, make_ids):
    model = tiny("rn", seed=1).eval()
    other = tiny("rn", seed=2).eval()
    image, ids = torch.randn(1, 3, 64, 64), make_ids(1)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(image, ids), other(image, ids))


def test_config_round_trip_and_unknown_keys():
    from etris.config import ETRISConfig
    from etris.models import create_etris

    cfg = create_etris("etris_test_vit", interactor="full").config
    assert ETRISConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ETRISConfig"):
        ETRISConfig.from_dict({"bridger_width": 3})


def test_bad_inputs_raise_clear_errors(tiny, make_ids):
    model = tiny("vit").eval()
    with pytest.raises(ValueError, match="image must be"):
        model(torch.randn(1, 1, 64, 64), make_ids(1))
    with pytest.raises(ValueError, match="built for"):
        model(torch.randn(1, 3, 96, 96), make_ids(1))
    with pytest.raises(ValueError, match="vis_dim must equal"):
        tiny("rn", vis_dim=64, num_heads=4)
    with pytest.raises(ValueError, match="backbone_bn"):
        tiny("rn", backbone_bn="frozen")
    from etris.models import create_etris

    with pytest.raises(ValueError, match="valid"):
        create_etris("etris_rn18")


def test_interactor_defaults_follow_backbone(tiny):
    from etris.models.bridger import FullInteractor, GatedInteractor

    assert isinstance(tiny("rn").bridger.fusion_v[0], FullInteractor)
    assert isinstance(tiny("vit").bridger.fusion_t[2], GatedInteractor)
    assert isinstance(tiny("vit", interactor="full").bridger.fusion_t[2], FullInteractor)
