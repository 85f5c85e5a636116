"""Local (visual-prompt) pipeline (paper Sec. 3.1) and the shared drawing helpers.

A red (255, 0, 0) rectangle outline is drawn on a copy of the full image around the object's box; a
VLM is asked to describe the boxed object with ``local_prompts_per_object`` requests drawn without
replacement from :data:`LOCAL_REQUESTS`. Each answer is cut at its first ".", every wording of
"red box" is replaced by one paraphrase of "the target" drawn per answer, and empties and
duplicates are dropped. The CLIP filter draws an ellipse inscribed in the box instead.

Line width from s = min(w, h): s < 20 -> 1, 20 < s < 50 -> 2, 50 < s < 100 -> 4, 100 < s < 200 -> 5,
otherwise 6 (strict bounds, so s in {20, 50, 100} or s >= 200 gives 6); ``inclusive_lower`` uses
``>=`` lower bounds instead.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from PIL import Image, ImageDraw

__all__ = [
    "RED",
    "LOCAL_REQUESTS",
    "TARGET_PHRASES",
    "RED_BOX_VARIANTS",
    "line_width",
    "draw_box",
    "draw_ellipse",
    "clean_vlm_answer",
    "sample_requests",
]

RED = (255, 0, 0)

#: Requests for the visual-prompt VLM (our wording).
LOCAL_REQUESTS: tuple[str, ...] = (
    "Describe the object in the red box.",
    "Write one sentence that identifies the object in the red box without ambiguity.",
    "What is the thing inside the red box?",
    "Describe the object marked by the red box so that someone could find it in the picture.",
    "Briefly say what the red box surrounds and where it is.",
    "Give a short referring expression for the object in the red box.",
    "How would you point out the object in the red box to a friend?",
)

#: Paraphrases of "the object I mean" that replace the red-box wording (our wording).
TARGET_PHRASES: tuple[str, ...] = (
    "the target",
    "the object I mean",
    "the one I am looking for",
    "the item in question",
    "the thing I am pointing at",
    "the object of interest",
    "the one I want",
    "the object I am after",
    "the item I mean",
    "the one in question",
    "the thing I am looking for",
    "the object we want",
)

#: Red-box wordings, longest first so that the longest match is replaced.
RED_BOX_VARIANTS: tuple[str, ...] = (
    "in the red box",
    "In a red box",
    "a red box",
    "The red box",
    "Red box",
    "red box",
)


def line_width(width: float, height: float, *, inclusive_lower: bool = False) -> int:
    """Outline width in pixels for a box of ``width`` x ``height`` pixels."""
    s = min(width, height)
    if s < 20:
        return 1
    bins = ((20, 50, 2), (50, 100, 4), (100, 200, 5))
    for low, high, value in bins:
        above = s >= low if inclusive_lower else s > low
        if above and s < high:
            return value
    return 6


def _outline(
    image: Image.Image, box: Sequence[float], *, ellipse: bool, inclusive_lower: bool
) -> Image.Image:
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box width and height must be positive, got {list(box)}")
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    shape = [x, y, x + w, y + h]
    width = line_width(w, h, inclusive_lower=inclusive_lower)
    if ellipse:
        draw.ellipse(shape, outline=RED, width=width)
    else:
        draw.rectangle(shape, outline=RED, width=width)
    return out


def draw_box(
    image: Image.Image, box: Sequence[float], *, inclusive_lower: bool = False
) -> Image.Image:
    """A copy of ``image`` with a red rectangle outline (x, y)-(x + w, y + h)."""
    return _outline(image, box, ellipse=False, inclusive_lower=inclusive_lower)


def draw_ellipse(
    image: Image.Image, box: Sequence[float], *, inclusive_lower: bool = False
) -> Image.Image:
    """A copy of ``image`` with a red ellipse outline inscribed in the box."""
    return _outline(image, box, ellipse=True, inclusive_lower=inclusive_lower)


def sample_requests(rng: random.Random, count: int) -> list[str]:
    """``count`` requests drawn without replacement."""
    if count > len(LOCAL_REQUESTS):
        raise ValueError(f"at most {len(LOCAL_REQUESTS)} requests per object, got {count}")
    return rng.sample(list(LOCAL_REQUESTS), count)


_RED_BOX = re.compile("|".join(re.escape(v) for v in RED_BOX_VARIANTS))


def clean_vlm_answer(answer: str, rng: random.Random) -> str:
    """Text before the first ".", with every red-box wording replaced by one paraphrase."""
    text = answer.strip().split(".")[0].strip()
    if not text:
        return ""
    replacement = rng.choice(TARGET_PHRASES)
    text = _RED_BOX.sub(replacement, text)
    return " ".join(text.split())
