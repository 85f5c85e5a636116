"""Reader of the xlsa17 "Proposed Split v2" files (Xian et al., TPAMI 2018).

``<root>/<DATASET>/res101.mat``: ``features`` (2048 x N), ``labels`` (N x 1, 1-based),
``image_files``; ``<root>/<DATASET>/att_splits.mat`` (or ``sent_splits.mat``): ``att`` (d_a x C),
``original_att``, ``allclasses_names``, ``trainval_loc``, ``train_loc``, ``val_loc``,
``test_seen_loc``, ``test_unseen_loc`` (1-based indices into N). ``.npz`` files with the same keys
work too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SPLIT_STATS", "ZSLData", "load_xlsa17", "read_mat"]

logger = logging.getLogger(__name__)

# Proposed Split v2 (the paper's Sec. 4 datasets): N, C, seen, unseen, d_a, trainval, test_seen, test_unseen
SPLIT_STATS: dict[str, dict[str, int]] = {
    "CUB": dict(N=11788, C=200, S=150, U=50, att_dim=312, trainval=7057, test_seen=1764,
                test_unseen=2967),
    "SUN": dict(N=14340, C=717, S=645, U=72, att_dim=102, trainval=10320, test_seen=2580,
                test_unseen=1440),
    "AWA2": dict(N=37322, C=50, S=40, U=10, att_dim=85, trainval=23527, test_seen=5882,
                 test_unseen=7913),
}  # fmt: skip
RES_FIELDS = ("features", "labels")
SPLIT_FIELDS = ("att", "trainval_loc", "test_seen_loc", "test_unseen_loc")
HOW_TO_GET = (
    "download the xlsa17 release (Xian et al., 'Zero-Shot Learning - A Comprehensive Evaluation "
    "of the Good, the Bad and the Ugly') and unpack data/<DATASET>/ from it, or run "
    "`dsp-zsl demo` for generated data in the same layout"
)


def read_mat(path: str | Path) -> dict[str, Any]:
    """Variables of a v5 ``.mat`` (scipy.io) or ``.npz`` file, without MATLAB's header keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {HOW_TO_GET}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    from scipy.io import loadmat

    data = loadmat(str(path))
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _need(data: dict[str, Any], fields: tuple[str, ...], path: Path) -> None:
    missing = [f for f in fields if f not in data]
    if missing:
        raise ValueError(
            f"{path} lacks the field(s) {missing} of the xlsa17 layout; it holds {sorted(data)}"
        )


def _locs(data: dict[str, Any], name: str, n: int, path: Path) -> np.ndarray:
    loc = np.asarray(data[name]).astype(np.int64).reshape(-1) - 1  # 1-based -> 0-based
    if loc.size and (loc.min() < 0 or loc.max() >= n):
        raise ValueError(
            f"{path}: {name} must hold 1-based indices in 1..{n}, got values in "
            f"{loc.min() + 1}..{loc.max() + 1}"
        )
    return loc


@dataclass
class ZSLData:
    """One ZSL benchmark in memory (0-based labels, features (N, F) as float32).

    ``train_*`` are the seen training features (trainval, or train with ``validation``);
    ``test_seen_*`` may be empty (validation protocol); ``prototypes`` (C, d_a) have unit rows.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_seen_x: np.ndarray
    test_seen_y: np.ndarray
    test_unseen_x: np.ndarray
    test_unseen_y: np.ndarray
    prototypes: np.ndarray
    seen_classes: np.ndarray
    unseen_classes: np.ndarray
    class_names: list[str]
    name: str = ""

    @property
    def num_classes(self) -> int:
        return int(self.prototypes.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def att_dim(self) -> int:
        return int(self.prototypes.shape[1])


def _names(data: dict[str, Any], count: int) -> list[str]:
    raw = data.get("allclasses_names")
    if raw is None:
        return [f"class_{i}" for i in range(count)]
    out: list[str] = []
    for item in np.asarray(raw, dtype=object).reshape(-1):
        while isinstance(item, np.ndarray) and item.size == 1 and item.dtype == object:
            item = item.reshape(-1)[0]
        out.append(
            str(np.asarray(item).reshape(-1)[0]) if isinstance(item, np.ndarray) else str(item)
        )
    return out


def load_xlsa17(
    root: str | Path,
    dataset: str,
    *,
    class_embedding: str = "att",
    preprocessing: bool = True,
    validation: bool = False,
) -> ZSLData:
    """Load ``<root>/<dataset>`` as the baselines do.

    Features are transposed to (N, F), labels and ``*_loc`` shifted to 0-based, prototypes
    transposed to (C, d_a) and L2-normalised per class. With ``preprocessing`` a MinMax scaler is
    fitted on the training features only and applied to every split, then everything is divided
    by the maximum of the scaled training features (1 after MinMax): test features may exceed 1.
    ``validation`` trains on ``train_loc`` and tests on ``val_loc`` (no seen test set).
    """
    folder = Path(root) / dataset
    res_path = _first(folder, "res101")
    split_path = _first(folder, f"{class_embedding}_splits")
    res = read_mat(res_path)
    _need(res, RES_FIELDS, res_path)
    splits = read_mat(split_path)
    fields = SPLIT_FIELDS + (("train_loc", "val_loc") if validation else ())
    _need(splits, fields, split_path)

    features = np.asarray(res["features"], dtype=np.float32)
    labels = np.asarray(res["labels"]).astype(np.int64).reshape(-1) - 1
    if features.ndim != 2:
        raise ValueError(f"{res_path}: features must be 2-D (F x N), got shape {features.shape}")
    if features.shape[1] != labels.size:
        if features.shape[0] == labels.size:
            raise ValueError(
                f"{res_path}: features are stored N x F ({features.shape}); the xlsa17 layout is "
                "F x N (one column per image)"
            )
        raise ValueError(
            f"{res_path}: features have {features.shape[1]} columns but there are "
            f"{labels.size} labels"
        )
    features = np.ascontiguousarray(features.T)
    n = features.shape[0]
    prototypes = np.asarray(splits["att"], dtype=np.float32).T  # (C, d_a)
    if labels.min() < 0 or labels.max() >= prototypes.shape[0]:
        raise ValueError(
            f"{res_path}: labels must be 1-based class ids in 1..{prototypes.shape[0]}, got "
            f"{labels.min() + 1}..{labels.max() + 1}"
        )
    norms = np.linalg.norm(prototypes, axis=1, keepdims=True)
    prototypes = prototypes / np.maximum(norms, 1e-12)

    if validation:
        train_loc = _locs(splits, "train_loc", n, split_path)
        unseen_loc = _locs(splits, "val_loc", n, split_path)
        seen_loc = np.zeros(0, dtype=np.int64)
    else:
        train_loc = _locs(splits, "trainval_loc", n, split_path)
        seen_loc = _locs(splits, "test_seen_loc", n, split_path)
        unseen_loc = _locs(splits, "test_unseen_loc", n, split_path)

    train_x, seen_x, unseen_x = features[train_loc], features[seen_loc], features[unseen_loc]
    if preprocessing:
        lo, hi = train_x.min(axis=0), train_x.max(axis=0)
        scale = np.where(hi - lo > 0, hi - lo, 1.0)
        train_x, seen_x, unseen_x = ((a - lo) / scale for a in (train_x, seen_x, unseen_x))
        mx = float(train_x.max()) if train_x.size else 1.0
        mx = mx if mx > 0 else 1.0
        train_x, seen_x, unseen_x = (a / mx for a in (train_x, seen_x, unseen_x))
    seen_classes = np.unique(labels[train_loc])
    unseen_classes = np.unique(labels[unseen_loc])
    overlap = np.intersect1d(seen_classes, unseen_classes)
    if overlap.size:
        raise ValueError(
            f"{split_path}: classes {overlap[:5].tolist()} appear in both the training and the "
            "unseen test split"
        )
    logger.info(
        "%s: %d train, %d test seen, %d test unseen; %d seen / %d unseen classes, d_a %d",
        dataset, train_x.shape[0], seen_x.shape[0], unseen_x.shape[0], seen_classes.size,
        unseen_classes.size, prototypes.shape[1],
    )  # fmt: skip
    return ZSLData(
        train_x=train_x.astype(np.float32),
        train_y=labels[train_loc],
        test_seen_x=seen_x.astype(np.float32),
        test_seen_y=labels[seen_loc],
        test_unseen_x=unseen_x.astype(np.float32),
        test_unseen_y=labels[unseen_loc],
        prototypes=prototypes.astype(np.float32),
        seen_classes=seen_classes,
        unseen_classes=unseen_classes,
        class_names=_names(splits, prototypes.shape[0]),
        name=dataset,
    )


def _first(folder: Path, stem: str) -> Path:
    for suffix in (".mat", ".npz"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder / (stem + '.mat')} (or .npz) does not exist; {HOW_TO_GET}")
