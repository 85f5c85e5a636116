"""Checkpoint I/O in the released format, and the timm integration."""

from __future__ import annotations

import pytest
import torch
from groupmixformer import GroupMixFormer, create_groupmixformer, load_checkpoint, save_checkpoint

from papers_shared.checkpoint import CheckpointError, CheckpointMismatchError

TINY = {"embed_dims": (40, 40, 40, 40), "depths": (1, 1, 1, 1)}


def _released_file(tmp_path, model, wrap=lambda sd: {"model": sd}):
    path = tmp_path / "groupmixformer_tiny.pth"
    torch.save(wrap({k: v.clone() for k, v in model.state_dict().items()}), path)
    return path


def test_released_format_round_trip_is_strict(tmp_path):
    torch.manual_seed(0)
    source = GroupMixFormer(**TINY, num_classes=5).eval()
    path = save_checkpoint(source, tmp_path / "ckpt.pth")
    assert set(torch.load(path, weights_only=True)) == {"model"}
    target = GroupMixFormer(**TINY, num_classes=5).eval()
    report = load_checkpoint(target, path)
    assert report.ok
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "state_dict", "module-prefix"],
)
def test_common_wrappers_are_unwrapped(tmp_path, wrap):
    source = GroupMixFormer(**TINY, num_classes=5)
    report = load_checkpoint(
        GroupMixFormer(**TINY, num_classes=5), _released_file(tmp_path, source, wrap)
    )
    assert report.ok


def test_backbone_loading_leaves_exactly_norm4_and_head(tmp_path):
    path = _released_file(tmp_path, GroupMixFormer(**TINY, num_classes=5))
    report = load_checkpoint(GroupMixFormer(**TINY, backbone_only=True), path)
    assert not report.missing
    assert {k.split(".")[0] for k in report.unexpected} == {"norm4", "head"}
    assert len(report.unexpected) == 7


def test_missing_key_or_wrong_shape_raises(tmp_path):
    source = GroupMixFormer(**TINY, num_classes=5)
    state = source.state_dict()
    del state["groupmixformer_backbone.0.gma_stage.0.att.qkv.bias"]
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError, match="att.qkv.bias"):
        load_checkpoint(GroupMixFormer(**TINY, num_classes=5), tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError, match="shape"):
        load_checkpoint(GroupMixFormer(**TINY, num_classes=6), _released_file(tmp_path, source))


def test_malformed_file_raises(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(GroupMixFormer(**TINY), tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(GroupMixFormer(**TINY), tmp_path / "absent.pth")


def test_factory_with_new_num_classes_keeps_a_fresh_head(tmp_path):
    path = save_checkpoint(create_groupmixformer("miny"), tmp_path / "miny.pth")
    model = create_groupmixformer("miny", checkpoint_path=path, num_classes=10, in_chans=3)
    assert model.head.out_features == 10


timm = pytest.importorskip("timm")


def test_timm_names_are_registered():
    assert {f"groupmixformer_{v}" for v in ("miny", "tiny", "small", "base", "large")} <= set(
        timm.list_models("groupmixformer_*")
    )


def test_timm_pretrained_from_local_file(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("groupmixformer_miny").eval()
    path = save_checkpoint(source, tmp_path / "weights.pth")
    loaded = timm.create_model(
        "groupmixformer_miny", pretrained=True, pretrained_cfg_overlay={"file": str(path)}
    ).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))
    new_head = timm.create_model(
        "groupmixformer_miny",
        pretrained=True,
        num_classes=3,
        pretrained_cfg_overlay={"file": str(path)},
    )
    torch.testing.assert_close(new_head.conv_stem.proj1.weight, source.conv_stem.proj1.weight)
    assert new_head.head.out_features == 3


def test_timm_features_only_gives_four_strides():
    model = timm.create_model("groupmixformer_miny", features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [40, 80, 160, 160]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [
        (1, 40, 16, 24),
        (1, 80, 8, 12),
        (1, 160, 4, 6),
        (1, 160, 2, 3),
    ]


def test_timm_forward_intermediates_and_pretrained_cfg():
    model = timm.create_model("groupmixformer_miny", num_classes=0, in_chans=1).eval()
    assert model.pretrained_cfg["first_conv"] == "conv_stem.proj1"
    assert model.pretrained_cfg["interpolation"] == "bicubic"
    with torch.no_grad():
        final, inter = model.forward_intermediates(torch.randn(1, 1, 64, 64), indices=2)
        assert [m.shape[1] for m in inter] == [160, 160]
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 160)


def test_wrong_variant_file_fails_in_one_line_naming_the_variant(tmp_path):
    with torch.device("meta"):
        miny = create_groupmixformer("miny")
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in miny.state_dict().items()}
    torch.save({"model": state}, tmp_path / "weights.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(GroupMixFormer(**TINY, num_classes=1000), tmp_path / "weights.pth")
    message = str(err.value)
    assert "\n" not in message and "groupmixformer_miny" in message
