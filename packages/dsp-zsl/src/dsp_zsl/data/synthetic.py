"""A generated ZSL benchmark written in the xlsa17 layout (so the demo goes through the real loader).

Each class has a hidden *true* prototype p_c; the visual features are drawn around a nonlinear
image of p_c, while the prototype given to the model is a distorted copy
a_c = normalize(p_c M + sigma e_c) (M a shared random linear map, e_c class-specific noise): the
visual-semantic domain shift that DSP is meant to reduce. The true prototypes are written beside
the .mat files (``true_prototypes.npy``) for analysis only; the loader never reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["SyntheticZSLConfig", "write_synthetic_xlsa17"]


@dataclass
class SyntheticZSLConfig:
    """Size and difficulty of the generated benchmark."""

    num_seen: int = 40
    """Seen classes."""
    num_unseen: int = 10
    """Unseen classes."""
    num_val: int = 4
    """Seen classes that form val_loc (the xlsa17 validation classes)."""
    att_dim: int = 16
    """Prototype size d_a."""
    feature_dim: int = 64
    """Visual feature size."""
    samples_per_class: int = 40
    """Images per class."""
    test_seen_fraction: float = 0.2
    """Share of each seen class's images in test_seen."""
    shift: float = 0.8
    """Strength of the shared linear distortion M = I + shift * R."""
    prototype_noise: float = 0.3
    """Class-specific noise sigma added to the given prototypes."""
    feature_noise: float = 0.35
    """Within-class spread of the visual features."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_seen", "num_unseen", "att_dim", "feature_dim", "samples_per_class"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0 <= self.num_val < self.num_seen:
            raise ValueError(f"num_val must lie in [0, num_seen), got {self.num_val}")
        if not 0.0 < self.test_seen_fraction < 1.0:
            raise ValueError(
                f"test_seen_fraction must lie in (0, 1), got {self.test_seen_fraction}"
            )
        for name in ("shift", "prototype_noise", "feature_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def write_synthetic_xlsa17(
    root: str | Path, name: str = "SYN", config: SyntheticZSLConfig | None = None
) -> Path:
    """Write ``<root>/<name>/{res101.mat, att_splits.mat, true_prototypes.npy}``; return the folder."""
    from scipy.io import savemat

    cfg = config or SyntheticZSLConfig()
    rng = np.random.default_rng(cfg.seed)
    num_classes = cfg.num_seen + cfg.num_unseen
    true = _unit(rng.normal(size=(num_classes, cfg.att_dim)))
    distortion = np.eye(cfg.att_dim) + cfg.shift * rng.normal(
        size=(cfg.att_dim, cfg.att_dim)
    ) / np.sqrt(cfg.att_dim)
    given = _unit(
        true @ distortion + cfg.prototype_noise * rng.normal(size=true.shape) / np.sqrt(cfg.att_dim)
    )
    # visual features: a random 2-layer network of the true prototype, plus noise, made >= 0
    w1 = rng.normal(size=(cfg.att_dim, 4 * cfg.att_dim)) / np.sqrt(cfg.att_dim)
    w2 = rng.normal(size=(4 * cfg.att_dim, cfg.feature_dim)) / np.sqrt(4 * cfg.att_dim)
    centres = np.tanh(true @ w1) @ w2 * 2.0  # (C, F)
    labels = np.repeat(np.arange(num_classes), cfg.samples_per_class)
    feats = centres[labels] + cfg.feature_noise * rng.normal(size=(labels.size, cfg.feature_dim))
    feats = np.log1p(np.exp(feats))  # softplus: non-negative like pooled ReLU features

    # classes: a random order, the first num_seen are seen
    order = rng.permutation(num_classes)
    seen, unseen = np.sort(order[: cfg.num_seen]), np.sort(order[cfg.num_seen :])
    val_classes = (
        np.sort(rng.choice(seen, size=cfg.num_val, replace=False)) if cfg.num_val else seen[:0]
    )
    trainval, test_seen = [], []
    for c in seen:
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, int(round(cfg.test_seen_fraction * idx.size)))
        test_seen.extend(idx[:k].tolist())
        trainval.extend(idx[k:].tolist())
    trainval_arr = np.sort(np.asarray(trainval))
    test_unseen = np.flatnonzero(np.isin(labels, unseen))
    val_loc = trainval_arr[np.isin(labels[trainval_arr], val_classes)]
    train_loc = trainval_arr[~np.isin(labels[trainval_arr], val_classes)]

    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    one = lambda a: (np.asarray(a, dtype=np.float64) + 1).reshape(-1, 1)  # noqa: E731 (1-based)
    files = np.empty((labels.size, 1), dtype=object)
    for i in range(labels.size):
        files[i, 0] = np.array([f"images/{labels[i]:03d}/{i:06d}.jpg"], dtype=object)
    names = np.empty((num_classes, 1), dtype=object)
    for c in range(num_classes):
        names[c, 0] = np.array([f"{c + 1:03d}.class_{c}"], dtype=object)
    savemat(
        str(folder / "res101.mat"),
        {"features": feats.T.astype(np.float64), "labels": one(labels), "image_files": files},
    )
    savemat(
        str(folder / "att_splits.mat"),
        {
            "att": given.T.astype(np.float64),
            "original_att": (100 * (given.T - given.min())).astype(np.float64),
            "allclasses_names": names,
            "trainval_loc": one(trainval_arr),
            "train_loc": one(train_loc),
            "val_loc": one(val_loc),
            "test_seen_loc": one(np.sort(np.asarray(test_seen))),
            "test_unseen_loc": one(test_unseen),
        },
    )
    np.save(folder / "true_prototypes.npy", true.astype(np.float32))
    (folder / "generator.json").write_text(str(asdict(cfg)) + "\n")
    return folder
