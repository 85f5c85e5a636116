import pytest

pytest.importorskip("mmseg")
import torch

pytestmark = pytest.mark.mmseg

TINY = dict(img_size=64, patch_size=16, embed_dim=32, depth=4, num_heads=2,
            out_indices=(0, 1, 2, 3), bottleneck=4)  # fmt: skip


def test_relative_position_index_layout():
    from dyt.integrations.mmseg import relative_position_index

    index = relative_position_index((2, 2))
    assert index.shape == (5, 5)
    assert index[0, 0] == 9 + 2 and index[0, 1] == 9 and index[1, 0] == 9 + 1
    assert index[1:, 1:].max() < 9 and torch.all(index[1:, 1:].diagonal() == 4)


def test_backbone_four_scales_and_token_loss():
    from dyt.integrations.mmseg import DyTSegmentationBackbone

    backbone = DyTSegmentationBackbone(**TINY).train()
    outs = backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4),
                                             (2, 32, 2, 2)]  # fmt: skip
    assert backbone.token_loss.requires_grad and backbone.token_loss >= 0
    keys = backbone.state_dict().keys()
    for key in (
        "blocks.0.attn.relative_position_bias_table",
        "blocks.0.attn.relative_position_index",
        "fpn1.0.weight",
        "fpn1.2.weight",
        "fpn2.0.weight",
        "blocks.0.adaptmlp.up_proj.weight",
        "pos_embed",
        "cls_token",
    ):
        assert key in keys
    with pytest.raises(ValueError, match="64x64"):
        backbone(torch.randn(1, 3, 32, 32))


def _segmentor_and_batch(**segmentor_args):
    import dyt.integrations.mmseg  # noqa: F401  (registers)
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    norm = dict(type="BN", requires_grad=True)
    segmentor = MODELS.build(dict(
        type="DyTEncoderDecoder",
        backbone=dict(type="DyTViT", **TINY),
        decode_head=dict(type="UPerHead", in_channels=[32] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=16, num_classes=3, norm_cfg=norm,
                         loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0)),
        auxiliary_head=dict(type="FCNHead", in_channels=32, in_index=2, channels=8, num_convs=1,
                            num_classes=3, norm_cfg=norm,
                            loss_decode=dict(type="CrossEntropyLoss", loss_weight=0.4)),
        **segmentor_args,
    ))  # fmt: skip
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 64, 64)))
        sample.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(sample)
    return segmentor.train(), torch.randn(2, 3, 64, 64), samples


def _total(losses: dict) -> torch.Tensor:
    return sum(v for k, v in losses.items() if "loss" in k)


def test_registered_segmentor_adds_token_loss():
    segmentor, images, samples = _segmentor_and_batch()
    losses = segmentor.loss(images, samples)
    assert "loss_token" in losses and "decode.loss_ce" in losses and "aux.loss_ce" in losses
    assert "loss_kl" not in losses and not any(k.startswith("complete") for k in losses)
    _total(losses).backward()
    backbone = segmentor.backbone
    assert backbone.blocks[0].mlp_token_select.mlp_head.weight.grad is not None
    assert backbone.blocks[0].attn.qkv.weight.grad is None


def test_optional_pixel_kl_with_complete_model():
    segmentor, images, samples = _segmentor_and_batch(complete_distill=True, distill_weight=0.5)
    losses = segmentor.loss(images, samples)
    for key in ("loss_token", "decode.loss_ce", "aux.loss_ce", "complete.loss_ce", "loss_kl"):
        assert key in losses and torch.isfinite(losses[key]), key
    assert losses["loss_kl"] > 0
    # the complete pass alone trains adapters and heads (its loss has gradients), no TD
    losses["complete.loss_ce"].backward(retain_graph=True)
    block = segmentor.backbone.blocks[0]
    assert block.adaptmlp.up_proj.weight.grad.abs().sum() > 0
    assert block.mlp_token_select.mlp_head.weight.grad is None
    _total(losses).backward()
    assert block.mlp_token_select.mlp_head.weight.grad is not None


@pytest.mark.parametrize("preset, decay", [("official", "PolyLR"), ("paper", "CosineAnnealingLR")])
def test_segmentation_config_presets_build_and_run(preset, decay):
    from dyt.integrations.mmseg import segmentation_config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope("mmseg")  # what mmseg's runtime _base_ config sets

    config = segmentation_config("coco_stuff164k", preset, backbone_overrides=TINY)
    warmup, schedule = config["param_scheduler"]
    assert warmup["type"] == "LinearLR" and warmup["end"] == 1500
    assert schedule["type"] == decay and schedule["end"] == 80_000
    assert config["optim_wrapper"]["optimizer"]["weight_decay"] == 0.05
    model_cfg = config["model"]
    assert model_cfg["decode_head"]["num_classes"] == 171
    assert model_cfg["backbone"]["use_rel_pos_bias"] and model_cfg["decode_head"]["channels"] == 32
    model_cfg["decode_head"]["norm_cfg"] = model_cfg["auxiliary_head"]["norm_cfg"] = dict(type="BN")
    segmentor = MODELS.build(model_cfg).eval()
    with torch.no_grad():
        logits = segmentor(torch.randn(1, 3, 64, 64), mode="tensor")
    assert logits.shape == (1, 171, 16, 16)
    with pytest.raises(ValueError, match="dataset"):
        segmentation_config("cityscapes")
