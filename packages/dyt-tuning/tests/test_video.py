import numpy as np
import pytest
import torch
from dyt.data.video import clip_indices
from dyt.models.video import AttentiveBlock, convert_vit_to_video


def test_attentive_block_parameter_count_for_vit_base():
    block = AttentiveBlock(768, 12)
    query_token = 768
    assert sum(p.numel() for p in block.parameters()) + query_token == 2_366_976


def test_video_model_shapes_keys_and_trainable_parts(tiny_vit):
    model = convert_vit_to_video(tiny_vit(), num_classes=7, num_frames=2, bottleneck=4)
    video = torch.randn(2, 3, 2, 32, 32)
    logits, aux = model.train()(video)
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
        "blocks.0.adaptmlp.down_proj.weight",
    ):
        assert key in keys
    assert "attentive_blocks.cross_attn.k.bias" not in keys
    assert torch.all(model.query_token == 0)
    logits.sum().backward()
    assert model.attentive_blocks.cross_attn.k.weight.grad is not None
    assert model.blocks[0].attn.qkv.weight.grad is None


def test_video_sparse_equals_dense(tiny_vit):
    torch.manual_seed(0)
    model = convert_vit_to_video(tiny_vit(), num_classes=3, num_frames=2).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.mlp_token_select.mlp_head.weight.normal_(0, 0.5)
    video = torch.randn(2, 3, 2, 32, 32)
    assert (model(video)[0] - model(video, sparse=False)[0]).abs().max() < 1e-5


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


def test_trainer_trains_video_model_on_clip_lists(tmp_path, capsys):
    pytest.importorskip("decord")
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
            "--num-workers", "0", "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["eval_accuracy"] <= 1 and record["eval_gflops"] > 0
    saved = torch.load(out / "checkpoint.pth", weights_only=True)["model"]
    assert "query_token" in saved and "attentive_blocks.cross_attn.q_bias" in saved
