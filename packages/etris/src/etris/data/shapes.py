"""The built-in data: images of coloured shapes with referring sentences and target masks.

Each image holds three shapes on a noisy grey background. The target is named by colour and
shape ("the red circle left of the blue square"); one distractor has the target's shape in another
colour, the other differs in both, so the target's colour identifies it and the mask depends on
the sentence (an image alone does not say which shape is meant). The relation phrase is always true
and names another shape in the image. Captions listing every shape ("a red circle,
a blue square and a red triangle") are what the tiny CLIP pair is pre-trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from etris.data.transforms import normalize_image, tokenize

__all__ = ["COLOURS", "SHAPES", "ShapesSample", "make_shapes_sample", "ShapesDataset"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (40, 170, 60),
    "blue": (45, 80, 225),
    "yellow": (230, 205, 40),
}
SHAPES = ("circle", "square", "triangle")


@dataclass
class ShapesSample:
    """image: (H, W, 3) uint8; mask: (H, W) uint8 0/255; sentence refers to the target; caption
    lists every shape."""

    image: np.ndarray
    mask: np.ndarray
    sentence: str
    caption: str


def _shape_mask(kind: str, size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "circle":
        return (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
    if kind == "square":
        half = radius * 0.85
        return (np.abs(ys - cy) <= half) & (np.abs(xs - cx) <= half)
    top, bottom = cy - radius, cy + radius * 0.8
    frac = (ys - top) / (bottom - top)
    return (ys >= top) & (ys <= bottom) & (np.abs(xs - cx) <= frac * radius)


def _relation(target: tuple[float, float], other: tuple[float, float]) -> str:
    dy, dx = target[0] - other[0], target[1] - other[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def make_shapes_sample(rng: np.random.Generator, size: int = 64) -> ShapesSample:
    """One image with three shapes, a referring sentence for one of them and its mask."""
    colours, shapes = list(COLOURS), list(SHAPES)
    colour = colours[rng.integers(len(colours))]
    shape = shapes[rng.integers(len(shapes))]
    other_shape = [s for s in shapes if s != shape][rng.integers(len(shapes) - 1)]
    others = [c for c in colours if c != colour]
    picked = rng.permutation(len(others))[:2]
    colour_b, colour_c = others[int(picked[0])], others[int(picked[1])]
    objects = [(colour, shape), (colour_b, shape), (colour_c, other_shape)]
    cells = rng.permutation(9)[:3]
    cell = size / 3
    radius = size * 0.12
    image = np.full((size, size, 3), 110, dtype=np.float32)
    image += rng.normal(0, 12, size=(size, size, 1)).astype(np.float32)
    masks, centres = [], []
    order = rng.permutation(3)
    for k in order:
        row, col = divmod(int(cells[k]), 3)
        cy = (row + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        cx = (col + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        m = _shape_mask(objects[k][1], size, cy, cx, radius * rng.uniform(0.85, 1.1))
        image[m] = np.array(COLOURS[objects[k][0]], dtype=np.float32) + rng.normal(0, 8, 3)
        masks.append((k, m))
        centres.append((k, (cy, cx)))
    centre = dict(centres)
    mask = dict(masks)[0]
    ref = int(rng.integers(1, 3))
    relation = _relation(centre[0], centre[ref])
    sentence = f"the {colour} {shape} {relation} the {objects[ref][0]} {objects[ref][1]}"
    described = [f"a {objects[k][0]} {objects[k][1]}" for k in order]
    caption = f"{described[0]}, {described[1]} and {described[2]}"
    return ShapesSample(
        image=np.clip(image, 0, 255).astype(np.uint8),
        mask=(mask * 255).astype(np.uint8),
        sentence=sentence,
        caption=caption,
    )


class ShapesDataset(Dataset):
    """``num`` generated samples (deterministic per seed and index), CLIP-normalised, tokenised.

    Items: image (3, S, S), ids (L,), mask (1, S, S) in {0, 1}; with ``text="caption"`` the ids
    hold the caption (for contrastive pre-training); ``text="blind"`` gives an empty sentence (the
    text-blind baseline).
    """

    def __init__(
        self, num: int, size: int = 64, seed: int = 0, word_len: int = 16, text: str = "sentence"
    ) -> None:
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        if text not in ("sentence", "caption", "blind"):
            raise ValueError(f"text must be 'sentence', 'caption' or 'blind', got {text!r}")
        self.num, self.size, self.seed, self.word_len, self.text = num, size, seed, word_len, text
        samples = [make_shapes_sample(np.random.default_rng([seed, i]), size) for i in range(num)]
        self.images = torch.stack(
            [normalize_image(torch.from_numpy(s.image).permute(2, 0, 1).float()) for s in samples]
        )
        self.masks = torch.stack([torch.from_numpy(s.mask)[None].float() / 255 for s in samples])
        self.sentences = [s.sentence for s in samples]
        self.captions = [s.caption for s in samples]
        texts = {"sentence": self.sentences, "caption": self.captions, "blind": [""] * num}[text]
        self.ids = tokenize(texts, word_len)

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[item], "ids": self.ids[item], "mask": self.masks[item]}
