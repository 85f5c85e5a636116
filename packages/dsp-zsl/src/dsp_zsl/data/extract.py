"""Optional feature extraction with a timm ResNet-101 (global-pooled 2048-d, 224 centre crop).

Re-extracted features are *not* numerically identical to the xlsa17 release (different weights,
resizing and library versions); compare methods only on features extracted the same way.
Needs the ``extract`` extra: ``pip install "dsp-zsl[extract]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["extract_features", "write_res101"]


def _require() -> tuple[Any, Any, Any]:
    try:
        import timm
        from PIL import Image
        from torchvision import transforms
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"feature extraction needs timm, torchvision and pillow ({err.name} is missing); "
            'install them with: pip install "dsp-zsl[extract]"'
        ) from err
    return timm, Image, transforms


@torch.no_grad()
def extract_features(
    image_paths: Sequence[str | Path],
    *,
    model_name: str = "resnet101",
    pretrained: bool = True,
    device: str = "cpu",
    batch_size: int = 32,
    image_size: int = 224,
) -> np.ndarray:
    """(N, D) float32 pooled features of the images (D = 2048 for ResNet-101)."""
    timm, Image, transforms = _require()
    model = timm.create_model(model_name, pretrained=pretrained, num_classes=0).eval().to(device)
    cfg = model.pretrained_cfg
    prep = transforms.Compose(
        [
            transforms.Resize(int(round(image_size / 0.875))),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(cfg.get("mean", (0.485, 0.456, 0.406)),
                                 cfg.get("std", (0.229, 0.224, 0.225))),
        ]
    )  # fmt: skip
    out = []
    for i in range(0, len(image_paths), batch_size):
        batch = [prep(Image.open(p).convert("RGB")) for p in image_paths[i : i + batch_size]]
        out.append(model(torch.stack(batch).to(device)).float().cpu().numpy())
    if not out:
        raise ValueError("image_paths is empty")
    return np.concatenate(out).astype(np.float32)


def write_res101(
    folder: str | Path, features: np.ndarray, labels: Sequence[int], image_files: Sequence[str]
) -> Path:
    """Write ``res101.mat`` in the xlsa17 layout: features (D x N), 1-based labels (N x 1)."""
    from scipy.io import savemat

    features = np.asarray(features)
    labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    if features.ndim != 2 or features.shape[0] != labels_arr.size:
        raise ValueError(
            f"features must be (N, D) with one row per label; got {features.shape} for "
            f"{labels_arr.size} labels"
        )
    if labels_arr.min() < 0:
        raise ValueError("labels must be 0-based class ids (they are written 1-based)")
    files = np.empty((len(image_files), 1), dtype=object)
    for i, name in enumerate(image_files):
        files[i, 0] = np.array([str(name)], dtype=object)
    path = Path(folder) / "res101.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(
        str(path),
        {"features": features.T.astype(np.float64), "labels": (labels_arr + 1).reshape(-1, 1),
         "image_files": files},
    )  # fmt: skip
    return path
