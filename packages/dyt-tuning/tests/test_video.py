import numpy as np
import pytest
import torch
from dyt import forward_dyt
from dyt.data.video import clip_indices
from dyt.models.video import AttentiveBlock, convert_vit_to_video


def test_attentive_block_parameter_count_for_vit_base():
    block = AttentiveBlock(768, 12)
    query_token = 768
    assert sum(p.numel() for p in block.parameters()) + query_token == 2_366_976


def test_video_model_shapes_keys_and_trainable_parts(tiny_vit):
    model = convert_vit_to_video(tiny_vit(), num_classes=7, num_frames=2, bottleneck=4)
    video = torch.randn(2, 3, 2, 32, 32)
    logits, aux = forward_dyt(model.train(), video)
    assert logits.shape == (2, 7)
    assert aux["token_select"].shape == (4, 2, 16, 1)
    keys = model.state_dict().keys()
    for key in (
        "query_token",
        "attentive_blocks.norm_q.weight",
        "attentive_blocks.cross_attn.q.weight",
        "attentive_blocks.cross_attn.q_bias",
        "attentive_blocks.cross_attn.v_bias",
        "attentive_blocks.cross_attn.proj.bias",
        "backbone.blocks.0.adaptmlp.down_proj.weight",
    ):
        assert key in keys
    assert "attentive_blocks.cross_attn.k.bias" not in keys
    assert torch.all(model.query_token == 0)
    logits.sum().backward()
    assert model.attentive_blocks.cross_attn.k.weight.grad is not None
    assert model.backbone.blocks[0].attn.qkv.weight.grad is None


def test_video_sparse_equals_dense(tiny_vit):
    torch.manual_seed(0)
    model = convert_vit_to_video(tiny_vit(), num_classes=3, num_frames=2).eval()
    with torch.no_grad():
        for block in model.backbone.blocks:
            block.mlp_token_select.mlp_head.weight.normal_(0, 0.5)
    video = torch.randn(2, 3, 2, 32, 32)
    assert (
        forward_dyt(model, video)[0] - forward_dyt(model, video, sparse=False)[0]
    ).abs().max() < 1e-5


def test_video_model_rejects_images(tiny_vit):
    model = convert_vit_to_video(tiny_vit(), num_classes=3, num_frames=2)
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        model(torch.randn(2, 3, 32, 32))


def test_clip_indices_repeat_last_frame_for_short_videos():
    assert clip_indices(100, 4, 16, 10) == [10, 26, 42, 58]
    assert clip_indices(20, 4, 16, 0) == [0, 16, 19, 19]


def _write_mp4(path, frames: int = 20, size: int = 64) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), i * 10, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_decord_clip_dataset_train_and_test_views(tmp_path):
    pytest.importorskip("decord")
    from dyt.data.video import VideoClipDataset

    _write_mp4(tmp_path / "clip.mp4")
    (tmp_path / "list.txt").write_text("clip.mp4 3\n")
    train = VideoClipDataset(tmp_path / "list.txt", tmp_path, train=True, num_frames=4, stride=4,
                             img_size=32)  # fmt: skip
    clip, label = train[0]
    assert clip.shape == (3, 4, 32, 32) and label == 3
    test = VideoClipDataset(tmp_path / "list.txt", tmp_path, train=False, num_frames=4, stride=4,
                            img_size=32)  # fmt: skip
    views, _ = test[0]
    assert views.shape == (3, 3, 4, 32, 32)
    assert views.min() >= -1.0 and views.max() <= 1.0
    # later clips start later, so the constant-per-frame brightness increases
    assert views[2].mean() > views[0].mean()


@pytest.mark.parametrize("protocol, module", [("k400", "decord"), ("ssv2", "av")])
def test_trainer_trains_video_model_on_clip_lists(protocol, module, tmp_path, capsys):
    pytest.importorskip(module)
    import json

    from dyt.cli import main

    for i in range(4):
        _write_mp4(tmp_path / f"v{i}.mp4", frames=12)
    (tmp_path / "train.txt").write_text("".join(f"v{i}.mp4 {i % 2}\n" for i in range(4)))
    (tmp_path / "val.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    out = tmp_path / "run"
    args = ["train", "--preset", "video_k400", "--data-root", str(tmp_path), "--num-frames", "2",
            "--model-overrides", '{"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}',
            "--img-size", "32", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "2",
            "--num-workers", "0", "--output-dir", str(out), "--no-progress", "--device", "cpu",
            "--video-protocol", protocol]  # fmt: skip
    assert main(args) == 0
    record = json.loads((out / "history.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["eval_accuracy"] <= 1 and record["eval_gflops"] > 0
    from safetensors.torch import load_file

    saved = load_file(out / "model.safetensors")
    assert "model.query_token" in saved and "model.attentive_blocks.cross_attn.q_bias" in saved
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "val", "--batch-size", "2", "--num-workers", "0",
                 "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 2 and result["gflops"] == pytest.approx(record["eval_gflops"])


def test_segment_indices_one_frame_per_segment():
    import random

    from dyt.data.video import segment_indices

    assert segment_indices(80, 8, train=False) == [5, 15, 25, 35, 45, 55, 65, 75]
    random.seed(0)
    for _ in range(20):
        picks = segment_indices(80, 8, train=True)
        assert all(10 * i <= k < 10 * (i + 1) for i, k in enumerate(picks))
    assert segment_indices(3, 8, train=False) == [0, 0, 0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="no frames"):
        segment_indices(0, 8, train=True)


def test_video_rand_augment_applies_the_same_ops_to_every_frame():
    import random

    from dyt.data.video import VideoRandAugment

    augment = VideoRandAugment("rand-m9-n4-mstd0.5-inc1", img_size=32)
    frame = torch.randint(0, 256, (32, 48, 3), dtype=torch.uint8)
    clip = frame.expand(5, -1, -1, -1).contiguous()
    random.seed(1)
    changed = 0
    for _ in range(10):
        out = augment(clip)
        assert out.shape == clip.shape and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[t]) for t in range(1, 5)), "frames augmented differently"
        changed += int(not torch.equal(out[0], frame))
    assert changed >= 5


def _write_webm_like(path, frames: int, width: int, height: int) -> None:
    """A short clip whose brightness encodes the frame index (mpeg4 in .mkv for PyAV)."""
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            ramp = np.arange(width, dtype=np.uint8)[None, :, None] // 2  # brighter to the right
            image = np.full((height, width, 3), i * 10, dtype=np.uint8) + ramp
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_ssv2_protocol_reads_with_pyav_segments_and_spatial_crops(tmp_path):
    pytest.importorskip("av")
    from dyt.data.video import VideoClipDataset

    _write_webm_like(tmp_path / "clip.mkv", frames=16, width=96, height=48)
    (tmp_path / "list.txt").write_text("clip.mkv 7\n")
    test = VideoClipDataset(tmp_path / "list.txt", tmp_path, train=False, num_frames=4,
                            img_size=32, protocol="ssv2")  # fmt: skip
    assert test.reader == "pyav" and test.rand_augment is None
    views, label = test[0]
    assert views.shape == (3, 3, 4, 32, 32) and label == 7
    brightness = views[1].mean(dim=(0, 2, 3))  # middle frames of segments 2, 6, 10, 14
    assert torch.all(brightness[1:] > brightness[:-1])
    crop_means = views.mean(dim=(1, 2, 3, 4))  # left, centre, right crop of the long side
    assert crop_means[0] < crop_means[1] < crop_means[2]
    train = VideoClipDataset(tmp_path / "list.txt", tmp_path, train=True, num_frames=4,
                             img_size=32, protocol="ssv2")  # fmt: skip
    assert train.rand_augment is not None
    clip, _ = train[0]
    assert clip.shape == (3, 4, 32, 32) and clip.min() >= -1.0 and clip.max() <= 1.0
    with pytest.raises(ValueError, match="protocol"):
        VideoClipDataset(tmp_path / "list.txt", tmp_path, protocol="ucf101")
