"""Global prompt pipeline (paper Sec. 3.1): caption the image, then ask an LLM for phrases per object.

A1 caption: a request drawn from :data:`CAPTION_REQUESTS`, plus
``", including objects: " + ", ".join(hints)`` when the record has hints.

A2 query: ``caption + "\\n\\n" + lines``, one line per object,
``"/".join(expressions) + ": [x1, y1, x2, y2]"`` with the first box normalised by the image size
and rounded to 2 decimals (``round(x / W, 2), round(y / H, 2), round((x + w) / W, 2),
round((y + h) / H, 2)``, printed as Python floats).

A3 parser: blocks ``[KEY]\\n(1) A\\n(2) B``. A block goes to the one object whose sorted name key
equals the block's sorted key; with none, to the first object (in index order) sharing a name part;
with several equal keys, nowhere. Phrases are ``A.split(", ") + B.split(", ")`` kept when they have at
least two words and are not generic.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CAPTION_REQUESTS",
    "GENERIC_PHRASES",
    "caption_request",
    "normalized_box",
    "format_box",
    "build_llm_query",
    "object_key",
    "parse_llm_answer",
    "is_kept_phrase",
    "STOP_WORDS",
]

#: Function words ignored when texts are compared word by word.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "and",
        "or",
        "with",
        "is",
        "are",
        "its",
        "his",
        "her",
        "their",
        "this",
        "that",
    ]
)

#: Paraphrases of "describe the image in detail" (our wording).
CAPTION_REQUESTS: tuple[str, ...] = (
    "Describe this image in detail.",
    "Give a detailed description of the picture.",
    "What does this image show? Describe it thoroughly.",
    "Write a detailed account of everything visible in this photo.",
    "Explain in detail what is happening in the picture.",
    "Describe the scene in this image as completely as you can.",
    "Tell me, in detail, what you see in this image.",
    "Provide a thorough description of the photo's contents.",
    "Walk me through the details of this image.",
    "Describe the objects, people and actions in this picture in detail.",
    "Give a rich, detailed caption for this image.",
    "Characterise this image in detail.",
    "What can be seen in this photograph? Please be detailed.",
    "Summarise the visual content of this image in detail.",
    "Describe every notable element of this picture.",
    "Describe the picture below with as much detail as possible.",
)

#: Phrases too generic to point at one object.
GENERIC_PHRASES: frozenset[str] = frozenset(
    {
        "person in the image",
        "people in the image",
        "item in the image",
        "items in the image",
        "object in the image",
        "objects in the image",
        "item in the scene",
        "object in the scene",
        "focus of the image",
        "focus of the scene",
        "main object of image",
        "body part",
    }
)

_BLOCK = re.compile(r"\[(.*)\]\n\(1\) (.*)\n\(2\) (.*)", re.MULTILINE)


def caption_request(hints: Sequence[str], rng: random.Random, *, use_hints: bool = True) -> str:
    """A1: one request drawn at random, with the hint list appended when there is one."""
    text = rng.choice(CAPTION_REQUESTS)
    if use_hints and hints:
        text += ", including objects: " + ", ".join(hints)
    return text


def normalized_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """COCO (x, y, w, h) in pixels -> [x1, y1, x2, y2] / image size, rounded to 2 decimals."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x, y, w, h = (float(v) for v in box)
    return [
        round(x / width, 2),
        round(y / height, 2),
        round((x + w) / width, 2),
        round((y + h) / height, 2),
    ]


def format_box(values: Sequence[float]) -> str:
    """``[0.0, 0.1, 0.25, 0.5]``: Python's ``str(float)`` for each value."""
    return "[" + ", ".join(str(float(v)) for v in values) + "]"


def build_llm_query(record: dict[str, Any]) -> str:
    """A2: caption, a blank line, then one line per object (its first box only)."""
    lines = []
    for obj in record["bboxes"]:
        box = obj["bbox"][0]
        norm = normalized_box(box, int(record["width"]), int(record["height"]))
        lines.append("/".join(obj["expressions"]) + ": " + format_box(norm))
    return str(record.get("caption", "")) + "\n\n" + "\n".join(lines)


def object_key(expressions: Sequence[str]) -> str:
    return "/".join(sorted(expressions))


def is_kept_phrase(phrase: str) -> bool:
    """At least two space-separated words and not a generic phrase."""
    phrase = phrase.strip()
    return len(phrase.split(" ")) >= 2 and phrase.lower() not in GENERIC_PHRASES


def parse_llm_answer(answer: str, objects: Sequence[Sequence[str]]) -> list[list[str]]:
    """A3: phrases per object (same order as ``objects``, each a list of its expressions)."""
    keys = [object_key(exprs) for exprs in objects]
    parts = [set(exprs) for exprs in objects]
    out: list[list[str]] = [[] for _ in objects]
    for name, first, second in _BLOCK.findall(answer):
        block_key = "/".join(sorted(name.split("/")))
        exact = [i for i, key in enumerate(keys) if key == block_key]
        if len(exact) > 1:
            continue
        if exact:
            target = exact[0]
        else:
            block_parts = set(block_key.split("/"))
            overlapping = [i for i, p in enumerate(parts) if p & block_parts]
            if not overlapping:
                continue
            target = overlapping[0]
        for phrase in first.split(", ") + second.split(", "):
            phrase = phrase.strip()
            if is_kept_phrase(phrase) and phrase not in out[target]:
                out[target].append(phrase)
    return out
