import random

import numpy as np
import pytest
from instructdet.pipeline.local_stage import (
    LOCAL_REQUESTS,
    RED,
    TARGET_PHRASES,
    clean_vlm_answer,
    draw_box,
    draw_ellipse,
    line_width,
    sample_requests,
)
from PIL import Image


@pytest.mark.parametrize(
    ("side", "strict", "inclusive"),
    [
        (10, 1, 1),
        (19.9, 1, 1),
        (20, 6, 2),
        (21, 2, 2),
        (50, 6, 4),
        (60, 4, 4),
        (100, 6, 5),
        (150, 5, 5),
        (200, 6, 6),
        (500, 6, 6),
    ],
)
def test_line_width_boundaries(side, strict, inclusive):
    assert line_width(side, 1000) == strict
    assert line_width(1000, side) == strict
    assert line_width(side, side, inclusive_lower=True) == inclusive


def test_outline_touches_only_border_and_keeps_input():
    image = Image.new("RGB", (64, 48), (0, 128, 0))
    before = np.asarray(image).copy()
    box = [10, 8, 30, 20]  # min side 20 -> width 6 with strict bounds
    rect = np.asarray(draw_box(image, box))
    ell = np.asarray(draw_ellipse(image, box))
    assert np.array_equal(np.asarray(image), before)  # input untouched
    for drawn in (rect, ell):
        red = np.all(drawn == RED, axis=-1)
        assert red.any()
        ys, xs = np.nonzero(red)
        assert xs.min() >= 10 and xs.max() <= 40 and ys.min() >= 8 and ys.max() <= 28
        changed = np.any(drawn != before, axis=-1)
        assert np.array_equal(changed, red)  # nothing but red outline pixels changed
    centre = rect[18, 25]
    assert tuple(centre) == (0, 128, 0)  # the inside of the rectangle is untouched
    assert not np.all(ell[8, 10] == RED)  # the ellipse leaves the box corner alone


def test_bad_box_raises():
    with pytest.raises(ValueError, match="positive"):
        draw_box(Image.new("RGB", (8, 8)), [0, 0, 0, 4])


def test_clean_vlm_answer_first_sentence_and_red_box_variants():
    rng = random.Random(3)
    text = clean_vlm_answer("The man in the red box is sitting. He waves.", rng)
    assert "red box" not in text and text.endswith("is sitting")
    assert any(p in text for p in TARGET_PHRASES)
    for variant in ("In a red box", "a red box", "The red box", "Red box", "red box"):
        out = clean_vlm_answer(f"{variant} holds a cup.", random.Random(0))
        assert "red box" not in out.lower()
    assert clean_vlm_answer(".", random.Random(0)) == ""
    # one paraphrase per answer: both occurrences get the same replacement
    two = clean_vlm_answer("red box next to the red box", random.Random(1))
    phrase = [p for p in TARGET_PHRASES if p in two]
    assert len(phrase) >= 1 and two.count(phrase[0]) == 2


def test_request_sampling_without_replacement_is_seeded():
    a = sample_requests(random.Random(5), 3)
    assert a == sample_requests(random.Random(5), 3)
    assert len(set(a)) == 3 and set(a) <= set(LOCAL_REQUESTS)
    with pytest.raises(ValueError):
        sample_requests(random.Random(0), len(LOCAL_REQUESTS) + 1)
