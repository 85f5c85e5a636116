"""Chunked forwards (gradient caching) and autocast in the training step."""

from __future__ import annotations

import copy

import pytest
import torch
from softinfonce.augment import CoAugConfig
from softinfonce.config import ModelConfig, PretrainConfig
from softinfonce.losses import SoftInfoNCELoss
from softinfonce.train import batch_loss, build_model

AUG = CoAugConfig(num_frames=4, audio_duration=0.5, sample_rate=8000, n_fft=256, crop_size=16)
TINY_AVID = ModelConfig(
    video_depth=10, video_widths=(4, 8, 8, 8), audio_widths=(4, 8, 8, 8), head_dims=(16, 8)
)


def _batch(clips: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """2N views in the collate layout: the speed-1 views first, then the sped-up ones."""
    generator = torch.Generator().manual_seed(1)
    views = 2 * clips
    return {
        "video": torch.randn(views, 3, 4, 16, 16, generator=generator, dtype=dtype),
        "audio": torch.randn(views, 1, 50, 65, generator=generator, dtype=dtype),
        "clip_ids": torch.arange(clips).repeat(2),
        "view_ids": torch.arange(2).repeat_interleave(clips),
        "speeds": torch.cat([torch.ones(clips), torch.tensor([2.0, 3.0, 4.0] * clips)[:clips]]),
    }


def _grads(model: torch.nn.Module, loss_fn: torch.nn.Module) -> dict[str, torch.Tensor]:
    named = list(model.named_parameters()) + list(loss_fn.named_parameters())
    return {name: p.grad.clone() for name, p in named if p.grad is not None}


def _run(model, loss_fn, batch, chunk_size):  # noqa: ANN001, ANN202
    model, loss_fn = copy.deepcopy(model), copy.deepcopy(loss_fn)
    out = batch_loss(model, loss_fn, batch, chunk_size=chunk_size)
    (3.0 * out.loss).backward()  # a scaled loss (accumulation, fp16 loss scaling) scales all grads
    return out, _grads(model, loss_fn), model


@pytest.mark.parametrize("weight_mode", ["feature", "ratio", "zero"])
@pytest.mark.parametrize("chunk_size", [1, 3, 5])
def test_chunked_step_equals_full_step_float64(weight_mode: str, chunk_size: int) -> None:
    model = build_model(
        ModelConfig(arch="mlp", mlp_hidden=32, mlp_features=16, head_dims=(16, 8)), AUG
    )
    model = model.double().train()
    loss_fn = SoftInfoNCELoss(0.1, weight_mode, learnable_temperature=True).double()
    batch = _batch(5, torch.float64)
    full, full_grads, _ = _run(model, loss_fn, batch, None)
    chunked, chunked_grads, _ = _run(model, loss_fn, batch, chunk_size)
    torch.testing.assert_close(chunked.loss, full.loss, atol=1e-12, rtol=0)
    assert chunked.mean_weight == pytest.approx(full.mean_weight, abs=1e-12, nan_ok=True)
    assert set(chunked_grads) == set(full_grads) and "log_inv_temperature" in full_grads
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-10, rtol=1e-8, msg=name)


def test_chunked_avid_encoders_match_with_frozen_batchnorm() -> None:
    """Conv encoders with BN in eval mode (per-sample) give the same gradients in float64."""
    model = build_model(TINY_AVID).double().eval()
    loss_fn = SoftInfoNCELoss(0.1).double()
    batch = _batch(3, torch.float64)
    full, full_grads, _ = _run(model, loss_fn, batch, None)
    chunked, chunked_grads, _ = _run(model, loss_fn, batch, 2)
    torch.testing.assert_close(chunked.loss, full.loss, atol=1e-12, rtol=0)
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-10, rtol=1e-8, msg=name)


def test_chunked_float32_close_and_batchnorm_updated_once_per_chunk() -> None:
    model = build_model(TINY_AVID)
    loss_fn = SoftInfoNCELoss(0.1)
    batch = _batch(4)
    full, full_grads, _ = _run(model.eval(), loss_fn, batch, None)
    chunked, chunked_grads, _ = _run(model.eval(), loss_fn, batch, 3)
    torch.testing.assert_close(chunked.loss, full.loss, atol=1e-6, rtol=1e-6)
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    _, _, full_model = _run(model.train(), loss_fn, batch, None)
    _, _, split_model = _run(model.train(), loss_fn, batch, 3)  # 3 chunks, own BN statistics
    key = "video_model.conv1.1.num_batches_tracked"
    assert int(dict(split_model.named_buffers())[key]) == 3  # the graph-free pass is undone
    assert int(dict(full_model.named_buffers())[key]) == 1


def test_bf16_autocast_on_cpu_with_chunks() -> None:
    """The re-forward of each chunk runs under the autocast of the forward (the trainer's)."""
    model = build_model(TINY_AVID)
    loss_fn = SoftInfoNCELoss(0.1)
    seen: list[torch.dtype] = []
    model.video_proj.projection[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = batch_loss(model, loss_fn, _batch(4), chunk_size=4)
    out.loss.backward()
    assert len(seen) == 4 and set(seen) == {torch.bfloat16}  # 2 chunks, twice (no graph, graph)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    grad = model.video_proj.projection[0].weight.grad
    assert grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0


def test_chunked_forward_without_grad_is_one_pass() -> None:
    model = build_model(TINY_AVID).eval()
    loss_fn = SoftInfoNCELoss(0.1)
    with torch.no_grad():
        plain = batch_loss(model, loss_fn, _batch(3))
        chunked = batch_loss(model, loss_fn, _batch(3), chunk_size=2)
    torch.testing.assert_close(chunked.loss, plain.loss)


def test_config_errors_and_older_configs() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        PretrainConfig(chunk_size=0)
    with pytest.raises(ValueError, match="unknown PretrainConfig"):
        PretrainConfig.from_dict({"batch_sise": 8})
    old = PretrainConfig.from_dict({"mixed_precision": False, "batch_size": 8, "epochs": 3})
    assert old.batch_size == 8  # trainer settings of older configs are ignored
    record = {"trainer": {"epochs": 2}, "task": {"batch_size": 4, "augment": {"speeds": [2, 3]}}}
    from_run = PretrainConfig.from_dict(record)
    assert from_run.batch_size == 4 and from_run.augment.speeds == (2, 3)
