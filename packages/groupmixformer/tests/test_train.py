"""Trainer (single process and torchrun/DDP on gloo), eval entry point, and a tiny training run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from groupmixformer import GroupMixFormer

from papers_shared.distributed import run_torchrun

TINY_KWARGS = {"embed_dims": [40, 40, 40, 40], "depths": [1, 1, 1, 1]}


def _orientation_images(n: int, size: int = 32, seed: int = 0):
    """Class 0: horizontal stripes, class 1: vertical, class 2: diagonal (random phase, noise)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = []
    for label in labels.tolist():
        coord = (ys, xs, ys + xs)[label].float()
        phase = torch.rand(1, generator=gen) * 2 * math.pi
        pattern = torch.sin(coord * 2 * math.pi / 6 + phase)
        images.append(pattern + 0.3 * torch.randn(size, size, generator=gen))
    images = torch.stack(images)[:, None].expand(-1, 3, -1, -1).contiguous()
    return images, labels


def _write_image_folder(root, per_class: int = 6, size: int = 32):
    from PIL import Image

    images, labels = _orientation_images(3 * per_class, size)
    for split in ("train", "val"):
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = ((image[0] * 0.3 + 0.5).clamp(0, 1) * 255).byte().numpy()
            Image.fromarray(pixels).convert("RGB").save(folder / f"{i}.png")
    return root


def test_tiny_model_learns_orientation_textures():
    torch.manual_seed(0)
    images, labels = _orientation_images(48)
    model = GroupMixFormer(**TINY_KWARGS, num_classes=3, drop_path_rate=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(40):
        idx = torch.randperm(48, generator=torch.Generator().manual_seed(step))[:16]
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert accuracy > 0.6  # chance is 1/3


def test_train_one_epoch_then_eval_checkpoint(tmp_path):
    from groupmixformer.train import TrainConfig, evaluate_checkpoint, train

    data = _write_image_folder(tmp_path / "data")
    config = TrainConfig(
        data_dir=data,
        output_dir=tmp_path / "out",
        model="miny",
        model_kwargs=TINY_KWARGS,
        epochs=2,
        warmup_epochs=1,
        batch_size=4,
        img_size=32,
        workers=0,
        progress=False,
    )
    result = train(config)
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert result["history"][0]["val_count"] == 18
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    scores = evaluate_checkpoint(
        tmp_path / "out" / "checkpoint.pth",
        data / "val",
        model="miny",
        model_kwargs=TINY_KWARGS,
        img_size=32,
        batch_size=8,
        workers=0,
    )
    assert scores["count"] == 18
    assert 0 <= scores["top1"] <= scores["top5"] <= 100


def test_train_rejects_odd_batch(tmp_path):
    from groupmixformer.train import TrainConfig

    with pytest.raises(ValueError, match="even"):
        TrainConfig(data_dir=tmp_path, batch_size=3)


def test_train_reports_missing_folder(tmp_path):
    from groupmixformer.train import TrainConfig, train

    with pytest.raises(FileNotFoundError, match="image folder not found"):
        train(
            TrainConfig(
                data_dir=tmp_path / "absent", batch_size=2, workers=0, epochs=1, warmup_epochs=0
            )
        )


@pytest.mark.slow
@pytest.mark.distributed
def test_trainer_runs_unchanged_under_torchrun(tmp_path):
    data = _write_image_folder(tmp_path / "data", per_class=4)
    out = tmp_path / "out"
    run_torchrun(
        [
            "-m",
            "groupmixformer",
            "train",
            "--data-dir",
            str(data),
            "--output-dir",
            str(out),
            "--model",
            "miny",
            "--model-kwargs",
            json.dumps(TINY_KWARGS),
            "--epochs",
            "1",
            "--warmup-epochs",
            "0",
            "--batch-size",
            "2",
            "--img-size",
            "32",
            "--workers",
            "0",
            "--device",
            "cpu",
        ],
        nproc=2,
        timeout=300,
        check=True,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["history"][0]["val_count"] == 12
    assert (out / "checkpoint.pth").exists()
