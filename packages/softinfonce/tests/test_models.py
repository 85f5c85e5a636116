from __future__ import annotations

import pytest
import torch
from softinfonce.convert import avid_filter_fn, load_avid_checkpoint, to_avid_checkpoint
from softinfonce.models import (
    AudioConv2D,
    ProjectionHead,
    R2Plus1D,
    audio_conv2d_10,
    create_av_model,
    r2plus1d_18_avid,
)
from torch import nn

from papers_shared.counting import count_parameters


def _tiny_model():
    return create_av_model(10, (4, 8, 8, 16), (4, 8, 8, 16), (16, 8))


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (r2plus1d_18_avid, 15_379_136),
        (audio_conv2d_10, 4_725_696),
        (ProjectionHead, 590_976),
        (create_av_model, 21_286_784),
    ],
)
def test_parameter_counts_match_the_spec(factory, expected: int) -> None:
    with torch.device("meta"):
        model = factory()
    assert count_parameters(model).total == expected


def test_full_model_has_267_state_tensors() -> None:
    with torch.device("meta"):
        assert len(create_av_model().state_dict()) == 267


def test_video_stage_shapes_match_the_spec() -> None:
    with torch.device("meta"):
        model = r2plus1d_18_avid()
        outs = model.forward_intermediates(torch.empty(1, 3, 8, 112, 112))
        assert model(torch.empty(1, 3, 8, 112, 112)).shape == (1, 512)
    shapes = [tuple(o.shape[1:]) for o in outs]
    assert shapes == [(64, 8, 28, 28), (128, 4, 14, 14), (256, 2, 7, 7), (512, 1, 4, 4)]


def test_audio_stage_shapes_match_the_spec() -> None:
    with torch.device("meta"):
        model = audio_conv2d_10()
        outs = model.forward_intermediates(torch.empty(1, 1, 200, 257))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (64, 50, 65),
        (128, 25, 33),
        (256, 13, 17),
        (512, 13, 17),
    ]


def test_global_pools_are_adaptive_max_pools() -> None:
    with torch.device("meta"):
        assert isinstance(r2plus1d_18_avid().pool, nn.AdaptiveMaxPool3d)
        assert isinstance(audio_conv2d_10().pool, nn.AdaptiveMaxPool2d)


def test_block_structure_follows_avid() -> None:
    with torch.device("meta"):
        model = r2plus1d_18_avid()
    first, downsample = model.conv2x[0], model.conv3x[0]
    assert first.res_conv is None
    assert isinstance(downsample.res_conv, nn.Conv3d) and downsample.res_conv.bias is None
    assert downsample.spt_conv1.stride == (1, 2, 2) and downsample.tmp_conv1.stride == (2, 1, 1)
    assert downsample.spt_conv1.out_channels == 128  # middle width = output width


@pytest.mark.parametrize("depth", [10, 18, 34])
def test_video_depths_build(depth: int) -> None:
    with torch.device("meta"):
        assert R2Plus1D(depth=depth)(torch.empty(2, 3, 8, 64, 64)).shape == (2, 512)


def test_tiny_model_trains_every_parameter() -> None:
    model = _tiny_model()
    zv, za = model(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 1, 40, 33))
    assert zv.shape == za.shape == (2, 8)
    (zv.sum() + za.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_eval_mode_is_deterministic_and_differs_from_train() -> None:
    model = _tiny_model()
    video, audio = torch.randn(3, 3, 4, 32, 32), torch.randn(3, 1, 40, 33)
    train_out = model(video, audio)[0]
    model.eval()
    first, second = model(video, audio)[0], model(video, audio)[0]
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, train_out)


def test_bad_input_shapes_raise() -> None:
    with pytest.raises(ValueError, match="video must be"):
        R2Plus1D(10, (4, 4, 4, 4))(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="audio must be"):
        AudioConv2D(10, (4, 4, 4, 4))(torch.randn(1, 40, 33))
    with pytest.raises(ValueError, match="depth"):
        R2Plus1D(depth=50)


def test_avid_checkpoint_round_trip(tmp_path) -> None:
    source = _tiny_model()
    checkpoint = to_avid_checkpoint(source)
    assert all(k.startswith("module.") for k in checkpoint["model"])
    checkpoint["optimizer"] = {"state": {}}  # AVID files carry more than the model
    checkpoint["model"]["module.memory_bank.view1_mem"] = torch.zeros(4, 8)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(checkpoint, path)
    target = _tiny_model()
    report = load_avid_checkpoint(target, path)
    assert report.ok
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_avid_key_layout_is_the_spec_s() -> None:
    with torch.device("meta"):
        keys = set(create_av_model().state_dict())
    for key in (
        "video_model.conv1.0.weight",
        "video_model.conv2x.0.spt_conv1.weight",
        "video_model.conv3x.0.res_conv.weight",
        "video_model.conv5x.1.out_bn.running_mean",
        "audio_model.conv1.0.weight",
        "audio_model.block4.bn2.weight",
        "video_proj.projection.4.bias",
        "audio_proj.projection.0.weight",
    ):
        assert key in keys


def test_avid_loader_reports_mismatches(tmp_path) -> None:
    checkpoint = to_avid_checkpoint(_tiny_model())
    del checkpoint["model"]["module.video_model.conv1.0.weight"]
    torch.save(checkpoint, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing"):
        load_avid_checkpoint(_tiny_model(), tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no AVID encoder keys"):
        avid_filter_fn({"encoder.weight": torch.zeros(1)})


def test_backbones_only_loading_skips_heads(tmp_path) -> None:
    checkpoint = to_avid_checkpoint(_tiny_model())
    checkpoint["model"] = {k: v for k, v in checkpoint["model"].items() if "_proj." not in k}
    torch.save(checkpoint, tmp_path / "backbones.pth")
    report = load_avid_checkpoint(_tiny_model(), tmp_path / "backbones.pth", heads=False)
    assert report.missing and all("_proj." in k for k in report.missing)
