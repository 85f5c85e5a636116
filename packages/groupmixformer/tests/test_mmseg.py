"""mmsegmentation backbone: registry build, EncoderDecoder + UPerHead forward and loss step,
pretrained loading, frozen stages, and the shipped UperNet config (skipped without mmseg)."""

from __future__ import annotations

from importlib.resources import files

import pytest
import torch

pytestmark = pytest.mark.mmseg

mmseg = pytest.importorskip("mmseg")
pytest.importorskip("mmcv.ops")

TINY_ARCH = {"embed_dims": [40, 40, 80, 80], "depths": [1, 1, 1, 1]}


def _build(cfg):
    import groupmixformer.integrations.mmseg  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmseg"):
        return MODELS.build(cfg)


def _segmentor_cfg(backbone):
    norm_cfg = {"type": "BN", "requires_grad": True}
    return {
        "type": "EncoderDecoder",
        "data_preprocessor": {"type": "SegDataPreProcessor", "size": (64, 64)},
        "backbone": backbone,
        "decode_head": {
            "type": "UPerHead",
            "in_channels": [40, 40, 80, 80],
            "in_index": [0, 1, 2, 3],
            "pool_scales": (1, 2, 3, 6),
            "channels": 32,
            "num_classes": 5,
            "norm_cfg": norm_cfg,
            "align_corners": False,
            "loss_decode": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
        },
        "train_cfg": {},
        "test_cfg": {"mode": "whole"},
    }


def test_backbone_is_registered_and_returns_four_maps():
    backbone = _build({"type": "GroupMixFormer", "arch": TINY_ARCH}).eval()
    maps = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [
        (2, 40, 16, 24),
        (2, 40, 8, 12),
        (2, 80, 4, 6),
        (2, 80, 2, 3),
    ]
    assert not [k for k in backbone.state_dict() if k.startswith(("norm4.", "head."))]


def test_encoder_decoder_with_uperhead_forward_and_loss_step():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    segmentor = _build(_segmentor_cfg({"type": "GroupMixFormer", "arch": TINY_ARCH}))
    segmentor.init_weights()
    samples = []
    for _ in range(2):
        sample = SegDataSample(
            metainfo={"img_shape": (64, 64), "ori_shape": (64, 64), "pad_shape": (64, 64)}
        )
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 64, 64)))
        samples.append(sample)
    inputs = torch.randn(2, 3, 64, 64)
    segmentor.train()
    losses = segmentor.loss(inputs, samples)
    loss = sum(v for k, v in losses.items() if "loss" in k)
    loss.backward()
    first = segmentor.backbone.conv_stem.proj1.weight
    assert first.grad is not None and torch.isfinite(first.grad).all()
    segmentor.eval()
    with torch.no_grad():
        logits = segmentor(inputs, mode="tensor")
    assert logits.shape == (2, 5, 16, 16)


def test_pretrained_classification_checkpoint_loads_without_head(tmp_path):
    from groupmixformer import GroupMixFormer, save_checkpoint

    classifier = GroupMixFormer(**TINY_ARCH, num_classes=7)
    path = save_checkpoint(classifier, tmp_path / "cls.pth")
    backbone = _build(
        {
            "type": "GroupMixFormer",
            "arch": TINY_ARCH,
            "init_cfg": {"type": "Pretrained", "checkpoint": str(path)},
        }
    )
    backbone.init_weights()
    torch.testing.assert_close(backbone.conv_stem.proj1.weight, classifier.conv_stem.proj1.weight)


def test_frozen_stages_and_norm_eval():
    backbone = _build(
        {"type": "GroupMixFormer", "arch": TINY_ARCH, "frozen_stages": 1, "norm_eval": True}
    )
    backbone.train()
    assert not any(p.requires_grad for p in backbone.groupmixformer_backbone[1].parameters())
    assert all(p.requires_grad for p in backbone.groupmixformer_backbone[2].parameters())
    assert not backbone.conv_stem.norm1.training
    assert not backbone.patch_embed_layers[3].norm.training


def test_shipped_upernet_config_parses_with_the_documented_defaults():
    from mmengine.config import Config

    path = (
        files("groupmixformer.integrations")
        / "configs"
        / "upernet_groupmixformer_base_ade20k_512x512_160k.py"
    )
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.type == "GroupMixFormer"
    assert cfg.model.backbone.arch == "base"
    assert cfg.model.decode_head.type == "UPerHead"
    assert list(cfg.model.decode_head.in_channels) == [200, 240, 320, 480]
    assert cfg.optim_wrapper.optimizer.lr == 6e-5
