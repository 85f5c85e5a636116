from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from softinfonce.augment import CoAugConfig
from softinfonce.config import ModelConfig, PretrainConfig
from softinfonce.data import SpeedCoAugDataset, SyntheticSpec, generate_split, kinetics_folder
from softinfonce.evaluate import (
    average_clip_scores,
    cross_modal_recall,
    extract_embeddings,
    extract_features_job,
    linear_probe,
    load_feature_parts,
    retrieval_topk,
)
from softinfonce.train import build_model, pretrain

from papers_shared.checkpoint import read_state_dict
from papers_shared.trainer import RunFolderError, TrainerConfig

SPEC = SyntheticSpec(num_classes=2, duration=2.2, fps=20, size=32, sample_rate=8000)
AUG = CoAugConfig(
    num_frames=4,
    frame_rate=8.0,
    audio_duration=0.5,
    sample_rate=8000,
    n_fft=256,
    crop_size=16,
    crop_scale=(0.7, 1.0),
    flip_prob=0.0,
    color_jitter=(0.0, 0.0, 0.0, 0.0),
)
MLP = ModelConfig(
    arch="mlp", mlp_hidden=64, mlp_features=32, head_dims=(32, 16), use_output_bn=True
)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("train_clips")
    generate_split(root, "train", 8, spec=SPEC, seed=3)
    return kinetics_folder(root, "train")[0]


def _config(**overrides) -> PretrainConfig:
    base = {
        "augment": AUG,
        "model": MLP,
        "batch_size": 8,
        "lr": 3e-3,
        "num_workers": 0,
        "cache_decoded": True,
        "temperature": 0.1,
        "weight_mode": "zero",
    }
    return PretrainConfig(**{**base, **overrides})


def _trainer(output_dir: Path, steps: int, **overrides) -> TrainerConfig:
    """One batch per epoch (8 clips, batch 8): ``steps`` epochs, one checkpoint at the end."""
    base = {"epochs": steps, "save_every": steps, "eval_every": 0, "log_every": 1000}
    return TrainerConfig(output_dir=output_dir, device="cpu", **{**base, **overrides})


def test_tiny_pretraining_lowers_the_loss_and_saves(records, tmp_path: Path) -> None:
    result = pretrain(_config(), records, _trainer(tmp_path / "run", 40))
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 40 and result.final["steps"] == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert result.history[-1]["train_pos_acc"] > 1 / 16
    assert result.history[-1]["train_candidates"] == 16  # 2N views
    state = read_state_dict(tmp_path / "run" / "model.safetensors")
    assert set(state) == set(result.model.state_dict())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    config = PretrainConfig.from_dict(saved)
    assert config.augment.speeds == (2.0, 3.0, 4.0) and config.model.arch == "mlp"


def test_a_folder_holding_a_run_is_refused_and_resume_continues(records, tmp_path: Path) -> None:
    pretrain(_config(), records, _trainer(tmp_path / "run", 2, save_every=1))
    with pytest.raises(RunFolderError, match="already holds a run"):
        pretrain(_config(), records, _trainer(tmp_path / "run", 2))
    with pytest.raises(RunFolderError, match="temperature"):
        pretrain(_config(temperature=0.2), records, _trainer(tmp_path / "run", 3, resume=True))
    resumed = pretrain(_config(), records, _trainer(tmp_path / "run", 3, save_every=1, resume=True))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]  # the earlier history is kept
    again = pretrain(_config(), records, _trainer(tmp_path / "run", 3, save_every=1, resume=True))
    assert again.final["steps"] == 3 and len(again.history) == 3


def test_vanilla_mode_has_n_candidates(records, tmp_path: Path) -> None:
    config = _config(augment=CoAugConfig(**{**AUG.__dict__, "use_augmented_view": False}))
    result = pretrain(config, records, _trainer(tmp_path / "run", 2))
    assert result.history[-1]["train_candidates"] == 8
    assert "train_mean_w" not in result.history[-1]  # no partial pairs


def test_per_batch_speeds_and_ratio_weights(records, tmp_path: Path) -> None:
    aug = CoAugConfig(**{**AUG.__dict__, "speed_sampling": "per_batch", "speeds": (2.0,)})
    result = pretrain(
        _config(augment=aug, weight_mode="ratio"), records, _trainer(tmp_path / "run", 2)
    )
    assert result.history[-1]["train_mean_w"] == pytest.approx(0.5)


def test_batch_larger_than_data_raises(records, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain(_config(batch_size=16), records, _trainer(tmp_path / "run", 1))
    with pytest.raises(ValueError, match="batch_size"):
        PretrainConfig(batch_size=1)


def test_mlp_needs_the_augment_config() -> None:
    with pytest.raises(ValueError, match="augment"):
        build_model(MLP)


def test_embeddings_and_resumable_feature_job(records, tmp_path: Path) -> None:
    model = build_model(MLP, AUG)
    dataset = SpeedCoAugDataset(records, AUG, train=False, cache=True)
    feats = extract_embeddings(model, dataset, batch_size=3)
    assert feats["video_feat"].shape == (8, 32) and feats["z_audio"].shape == (8, 16)
    torch.testing.assert_close(feats["z_video"].norm(dim=1), torch.ones(8))
    extract_features_job(model, dataset, tmp_path / "f", shard=(1, 2), chunk_size=3)
    assert [p.name for p in sorted((tmp_path / "f").iterdir())] == ["part_00000003.pt"]
    stamp = (tmp_path / "f" / "part_00000003.pt").stat().st_mtime_ns
    extract_features_job(model, dataset, tmp_path / "f", shard=(0, 1), chunk_size=3)
    assert (tmp_path / "f" / "part_00000003.pt").stat().st_mtime_ns == stamp
    merged = load_feature_parts(tmp_path / "f")
    assert merged["clip_id"].tolist() == list(range(8))
    torch.testing.assert_close(merged["z_video"], feats["z_video"], atol=1e-5, rtol=0)


def test_cross_modal_recall_by_hand() -> None:
    zv = torch.eye(3)
    za = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    assert cross_modal_recall(zv, za, ks=(1, 2)) == {
        "R@1": pytest.approx(1 / 3),
        "R@2": pytest.approx(1.0),
    }


def test_retrieval_topk_by_hand() -> None:
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    labels = torch.tensor([0, 1, 2])
    queries = torch.tensor([[1.0, 0.1], [0.1, 1.0]])
    out = retrieval_topk(queries, torch.tensor([2, 1]), gallery, labels, ks=(1, 2))
    assert out == {"top1": 0.5, "top2": 1.0}


def test_linear_probe_separates_separable_features() -> None:
    torch.manual_seed(0)
    x = torch.randn(60, 5)
    y = (x[:, 0] > 0).long()
    assert linear_probe(x[:40], y[:40], x[40:], y[40:]) > 0.9


def test_average_clip_scores() -> None:
    ids, scores = average_clip_scores(
        torch.tensor([[1.0, 0], [0, 1.0], [1.0, 1.0]]), torch.tensor([5, 5, 7])
    )
    assert ids.tolist() == [5, 7]
    torch.testing.assert_close(scores, torch.tensor([[0.5, 0.5], [1.0, 1.0]]))
