"""Evaluation: embeddings, video->audio recall, class-based video retrieval, linear probe, and a
sharded, resumable feature-extraction job."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from papers_shared.progress import progress_bar
from papers_shared.sharding import take_shard
from softinfonce.data.datasets import SpeedCoAugDataset, collate_views
from softinfonce.models.avid import AVModel

__all__ = [
    "extract_embeddings",
    "cross_modal_recall",
    "retrieval_topk",
    "linear_probe",
    "average_clip_scores",
    "extract_features_job",
    "load_feature_parts",
]

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_embeddings(
    model: AVModel,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Backbone features and normalised head embeddings of every item (first view only) of a
    :class:`SpeedCoAugDataset` (or a ``Subset`` of one).

    Returns ``video_feat (N, Cv)``, ``audio_feat (N, Ca)``, ``z_video``/``z_audio (N, D)``,
    ``label (N,)``, ``clip_id (N,)``.
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_views
    )
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("video_feat", "audio_feat", "z_video", "z_audio", "label", "clip_id")
    }
    for batch in progress_bar(loader, enabled=progress, desc="embed"):
        n = batch["label"].shape[0]
        video, audio = batch["video"][:n].to(device), batch["audio"][:n].to(device)
        video_feat, z_video = model.encode_video(video)
        audio_feat, z_audio = model.encode_audio(audio)
        parts["video_feat"].append(video_feat.cpu())
        parts["audio_feat"].append(audio_feat.cpu())
        parts["z_video"].append(F.normalize(z_video, dim=-1).cpu())
        parts["z_audio"].append(F.normalize(z_audio, dim=-1).cpu())
        parts["label"].append(batch["label"])
        parts["clip_id"].append(batch["clip_ids"][:n])
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def cross_modal_recall(
    z_video: torch.Tensor, z_audio: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Video->audio R@k: row i's correct audio is row i. ``z_video, z_audio: (N, D)``."""
    if z_video.shape != z_audio.shape:
        raise ValueError(
            f"need equal shapes, got {tuple(z_video.shape)} and {tuple(z_audio.shape)}"
        )
    sims = F.normalize(z_video, dim=-1) @ F.normalize(z_audio, dim=-1).T
    correct = sims.diagonal()[:, None]
    rank = (sims > correct).sum(dim=1)  # 0 = retrieved first
    return {f"R@{k}": float((rank < k).float().mean()) for k in ks}


def retrieval_topk(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10, 20, 50),
) -> dict[str, float]:
    """Class-based video retrieval (Xu et al. 2019): a query hits at k when one of its k nearest
    gallery items (cosine) has its class. ``queries: (Q, D)``, ``gallery: (G, D)``."""
    sims = F.normalize(queries, dim=-1) @ F.normalize(gallery, dim=-1).T
    order = sims.argsort(dim=1, descending=True)
    matches = gallery_labels[order] == query_labels[:, None]
    return {
        f"top{k}": float(matches[:, : min(k, gallery.shape[0])].any(dim=1).float().mean())
        for k in ks
    }


def average_clip_scores(
    scores: torch.Tensor, video_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Video-level scores: mean over the clips of each video (AVID's Video@1). Returns (ids, scores)."""
    ids, inverse = video_ids.unique(return_inverse=True)
    sums = torch.zeros(len(ids), scores.shape[1], dtype=scores.dtype).index_add_(0, inverse, scores)
    counts = torch.bincount(inverse, minlength=len(ids)).to(scores.dtype)[:, None]
    return ids, sums / counts


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    weight_decay: float = 1e-3,
    steps: int = 300,
    seed: int = 0,
) -> float:
    """Top-1 accuracy of a softmax classifier on standardised frozen features (full-batch L-BFGS)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    torch.manual_seed(seed)
    layer = torch.nn.Linear(xtr.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(
        layer.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(xtr), train_y) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float((layer(xte).argmax(1) == test_y).float().mean())


def extract_features_job(
    model: AVModel,
    dataset: SpeedCoAugDataset,
    output_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    chunk_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> list[Path]:
    """Write embeddings in chunks ``part_<first>.pt`` (this shard's chunks only); finished chunks
    are skipped, so an interrupted job resumes where it stopped."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    starts = take_shard(range(0, len(dataset), chunk_size), *shard)
    written = []
    for first in progress_bar(starts, enabled=progress, desc="extract"):
        path = out / f"part_{first:08d}.pt"
        if not path.exists():
            subset = torch.utils.data.Subset(
                dataset, range(first, min(first + chunk_size, len(dataset)))
            )
            feats = extract_embeddings(model, subset, batch_size=chunk_size, device=device)
            tmp = path.with_suffix(".tmp")
            torch.save(feats, tmp)
            tmp.replace(path)
        written.append(path)
    return written


def load_feature_parts(output_dir: str | Path) -> dict[str, torch.Tensor]:
    """Concatenate every ``part_*.pt`` of a finished :func:`extract_features_job`, in order."""
    paths = sorted(Path(output_dir).glob("part_*.pt"))
    if not paths:
        raise FileNotFoundError(
            f"no part_*.pt files in {output_dir}; run `softinfonce extract` first"
        )
    parts = [torch.load(p, weights_only=True) for p in paths]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
