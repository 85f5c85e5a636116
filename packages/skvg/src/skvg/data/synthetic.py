"""Synthetic SK-VG scenes in which the referent can only be found by reading the knowledge.

Each image shows ``num_figures`` figures of the same shape and size that differ only in colour. The
knowledge passage (sentences in random order) gives every figure a name, a role and relations, and
says what colour each person wears; the query never names a colour:

- easy: the query is the target's name ("anna");
- medium: the query is the target's role ("the doctor"), bound to a name in the knowledge;
- hard: the query is a relation to a person who is not in the image ("tom's sister"), bound to a
  name in the knowledge.

Names, roles and colours are drawn afresh for every image, so without the knowledge a model can only
guess among identical-looking figures (chance about 1 / num_figures); with it, the name -> colour
binding identifies the box. Records follow the release layout (centre boxes, ``level`` on test) and
are written as ``annotations.json`` + ``images/`` so the real loader reads them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from skvg.boxes import xyxy_to_center

Span = tuple[int, int]

__all__ = [
    "SceneConfig",
    "make_scene",
    "coreference_clusters",
    "write_synthetic_dataset",
    "NAMES",
    "ROLES",
    "RELATIONS",
    "COLOURS",
    "vocabulary",
]

NAMES = (
    "anna",
    "ben",
    "carl",
    "dora",
    "emil",
    "fay",
    "gus",
    "hana",
    "ivan",
    "june",
    "kurt",
    "lena",
)
ROLES = ("doctor", "teacher", "pilot", "chef", "farmer", "singer")
RELATIONS = ("sister", "brother", "friend", "cousin", "boss", "neighbour")
OTHERS = ("tom", "rita", "omar", "sara")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 180),
    "orange": (240, 140, 30),
}
LEVELS = ("easy", "medium", "hard")


def vocabulary() -> list[str]:
    """Every word the generator writes (for a word-level tokenizer)."""
    words = set(NAMES) | set(ROLES) | set(RELATIONS) | set(OTHERS) | set(COLOURS)
    words |= {"the", "is", "wears", "'", "s", ".", "in", "picture"}
    return sorted(words)


class SceneConfig:
    """Scene layout.

    Args:
        image_size: side of the square image.
        num_figures: figures per image.
        figure_size: side of each square figure.
        grid: place figures on the cells of a ``figure_size`` grid (cells align with a stride-32
            backbone when ``figure_size`` is 32), instead of anywhere without overlap.
        num_names / num_colours: size of the name and colour pools drawn from (smaller pools make
            the miniature learnable by tiny models trained from scratch).
    """

    def __init__(
        self,
        image_size: int = 128,
        num_figures: int = 3,
        figure_size: int = 32,
        *,
        grid: bool = False,
        num_names: int = len(NAMES),
        num_colours: int = len(COLOURS),
    ) -> None:
        if not 2 <= num_colours <= len(COLOURS):
            raise ValueError(f"num_colours must be in 2..{len(COLOURS)}, got {num_colours}")
        if not 2 <= num_names <= len(NAMES):
            raise ValueError(f"num_names must be in 2..{len(NAMES)}, got {num_names}")
        if num_figures < 2 or num_figures > min(num_colours, num_names, len(OTHERS)):
            raise ValueError(
                f"num_figures must be in 2..{min(num_colours, num_names, len(OTHERS))}, "
                f"got {num_figures}"
            )
        if figure_size * 2 > image_size:
            raise ValueError(f"figure_size {figure_size} too large for image_size {image_size}")
        if grid and (image_size // figure_size) ** 2 < num_figures:
            raise ValueError("the grid has fewer cells than figures; use a larger image_size")
        self.image_size = image_size
        self.num_figures = num_figures
        self.figure_size = figure_size
        self.grid = grid
        self.names = NAMES[:num_names]
        self.colours = sorted(COLOURS)[:num_colours]


def _positions(rng: random.Random, cfg: SceneConfig) -> list[tuple[int, int]]:
    s, f = cfg.image_size, cfg.figure_size
    if cfg.grid:
        cells = [(i * f, j * f) for i in range(s // f) for j in range(s // f)]
        return rng.sample(cells, cfg.num_figures)
    for _ in range(1000):
        pts = [(rng.randint(0, s - f), rng.randint(0, s - f)) for _ in range(cfg.num_figures)]
        if all(
            abs(a[0] - b[0]) >= f or abs(a[1] - b[1]) >= f
            for i, a in enumerate(pts)
            for b in pts[i + 1 :]
        ):
            return pts
    raise RuntimeError("could not place the figures without overlap; use a larger image_size")


def make_scene(
    rng: random.Random, cfg: SceneConfig, level: str
) -> tuple[Image.Image, dict[str, Any], list[list[float]]]:
    """One image, its record and every figure's xyxy box (the proposals a detector would give)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    k = cfg.num_figures
    names = rng.sample(cfg.names, k)
    colours = rng.sample(cfg.colours, k)
    roles = rng.sample(ROLES, k)
    others = rng.sample(OTHERS, k)
    relations = [rng.choice(RELATIONS) for _ in range(k)]
    pos = _positions(rng, cfg)
    image = Image.new("RGB", (cfg.image_size, cfg.image_size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    boxes = []
    for (x, y), colour in zip(pos, colours):
        box = [float(x), float(y), float(x + cfg.figure_size), float(y + cfg.figure_size)]
        draw.rectangle(
            [x, y, x + cfg.figure_size - 1, y + cfg.figure_size - 1], fill=COLOURS[colour]
        )
        boxes.append(box)
    sentences = [f"{n} wears {c}." for n, c in zip(names, colours)]
    if level in ("medium", "hard"):
        sentences += [f"{n} is the {r}." for n, r in zip(names, roles)]
    if level == "hard":
        sentences += [f"{n} is {o}'s {rel}." for n, o, rel in zip(names, others, relations)]
    rng.shuffle(sentences)
    target = rng.randrange(k)
    query = {
        "easy": names[target],
        "medium": f"the {roles[target]}",
        "hard": f"{others[target]}'s {relations[target]}",
    }[level]
    record = {
        "knowledge": " ".join(sentences),
        "ref_exp": query,
        "bbox": xyxy_to_center(boxes[target]),
        "level": level,
    }
    return image, record, boxes


def coreference_clusters(record: dict[str, Any], names: Sequence[str] = NAMES) -> list[list[Span]]:
    """Mention clusters over ``f"{query}. {knowledge}"``, as a perfect coreference system would give.

    One cluster per person: every occurrence of the name, plus the role ("the doctor") and relation
    ("tom's sister") phrases bound to that name in the knowledge; the query span joins the cluster
    of the person it refers to.
    """
    query, knowledge = str(record["ref_exp"]), str(record["knowledge"])
    text = f"{query}. {knowledge}"
    offset = len(query) + 2
    clusters: dict[str, list[Span]] = {}
    aliases: dict[str, str] = {}
    for sentence in re.finditer(r"[^.]+\.", knowledge):
        words = sentence.group().strip(" .")
        m = re.fullmatch(r"(\w+) is (the \w+|\w+'s \w+)", words)
        if m:
            aliases[m.group(2)] = m.group(1)
    people = [n for n in names if re.search(rf"\b{n}\b", knowledge)]
    for name in people:
        spans = [
            (m.start() + offset, m.end() + offset) for m in re.finditer(rf"\b{name}\b", knowledge)
        ]
        for phrase, who in aliases.items():
            if who == name:
                spans += [
                    (m.start() + offset, m.end() + offset)
                    for m in re.finditer(re.escape(phrase), knowledge)
                ]
        clusters[name] = sorted(spans)
    referent = aliases.get(query, query)
    if referent in clusters:
        clusters[referent] = [(0, len(query)), *clusters[referent]]
    assert all(text[s:e] for c in clusters.values() for s, e in c)
    return list(clusters.values())


def write_synthetic_dataset(
    root: str | Path,
    *,
    train: int = 600,
    val: int = 90,
    test: int = 150,
    seed: int = 0,
    scene: SceneConfig | None = None,
) -> Path:
    """Write ``annotations.json``, ``images/`` and ``proposals.json`` under ``root``; return root.

    Train and val records keep only the four release keys; test records carry ``level``.
    ``proposals.json`` maps each split to one list of xyxy figure boxes per record;
    ``clusters.json`` maps each split to the coreference clusters of each record
    (:func:`coreference_clusters`).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    cfg = scene or SceneConfig()
    rng = random.Random(seed)
    data: dict[str, list[dict[str, Any]]] = {}
    proposals: dict[str, list[list[list[float]]]] = {}
    clusters: dict[str, list[list[list[Span]]]] = {}
    counter = 0
    for split, count in (("train", train), ("val", val), ("test", test)):
        data[split], proposals[split], clusters[split] = [], [], []
        for i in range(count):
            level = LEVELS[i % 3]
            image, record, boxes = make_scene(rng, cfg, level)
            name = f"{counter}.png"
            counter += 1
            image.save(root / "images" / name)
            record = {"image_name": name, **record}
            if split != "test":
                record.pop("level")
            data[split].append(record)
            proposals[split].append(boxes)
            clusters[split].append(coreference_clusters(record))
    (root / "annotations.json").write_text(json.dumps(data), encoding="utf-8")
    (root / "proposals.json").write_text(json.dumps(proposals), encoding="utf-8")
    (root / "clusters.json").write_text(json.dumps(clusters), encoding="utf-8")
    return root
