import numpy as np
import pytest
import torch
from instructdet.models.clip_filter import create_clip_scorer, filter_phrases
from instructdet.pipeline.local_stage import draw_ellipse
from PIL import Image


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))


def test_clip_logits_by_hand(tiny_scorer):
    image = _image()
    texts = ["a red square", "a small dog"]
    with torch.no_grad():
        img = tiny_scorer.model.encode_image(tiny_scorer.preprocess(image).unsqueeze(0))[0]
        txt = tiny_scorer.model.encode_text(tiny_scorer.tokenizer(texts))
    img = img / img.norm()
    txt = txt / txt.norm(dim=-1, keepdim=True)
    expected = (tiny_scorer.model.logit_scale.exp() * txt @ img).detach().numpy()
    np.testing.assert_allclose(tiny_scorer.scores(image, texts), expected, rtol=1e-5, atol=1e-5)


def test_filter_rule_by_hand(tiny_scorer):
    image = _image()
    box = [5, 6, 20, 22]
    refs = ["the thing on the left", "left object"]
    gen = [
        "a blue object",
        "the left thing",
        "a dog in the park",
        "left object",
    ]  # last one is a reference
    kept = filter_phrases(tiny_scorer, image, [box], refs, gen, alpha=2.0, tolerance=1.5)
    candidates = ["a blue object", "the left thing", "a dog in the park"]
    texts = refs + candidates
    h = 2.0 * tiny_scorer.scores(draw_ellipse(image, box), texts) - tiny_scorer.scores(image, texts)
    threshold = h[:2].min() - 1.5
    expect_keep = [t for t, v in zip(candidates, h[2:]) if v > threshold]
    assert kept.kept == expect_keep
    assert sorted(kept.kept + kept.dropped) == sorted(candidates)  # the reference left both lists


def test_threshold_is_strict_and_multi_box_is_progressive():
    calls = []

    class Oracle:
        """h(t) = 2 s(I_b, t) - s(I, t) with s(I, t) = 0 and s(I_b, t) = table[box][t] / 2."""

        def __init__(self, tables):
            self.tables = tables

        def scores(self, image, texts):
            red = np.all(np.asarray(image) == (255, 0, 0), axis=-1)
            if not red.any():
                return np.zeros(len(texts))
            xs = np.nonzero(red)[1]
            key = 0 if xs.min() < 20 else 1
            calls.append((key, list(texts)))
            return np.array([self.tables[key][t] / 2 for t in texts])

    image = Image.new("RGB", (60, 40), (0, 0, 0))
    boxes = [[2, 2, 10, 10], [30, 2, 10, 10]]
    tables = [
        {"ref": 5.0, "equal": 3.5, "above": 3.6, "low": 1.0, "late": 9.0},
        {"ref": 5.0, "above": 2.0, "late": 9.0},
    ]
    res = filter_phrases(
        Oracle(tables),
        image,
        boxes,
        ["ref"],
        ["equal", "above", "low", "late"],
        alpha=2.0,
        tolerance=1.5,
    )
    # box 0: threshold 5 - 1.5 = 3.5; "equal" (3.5) is not strictly above -> dropped
    # box 1: only the survivors of box 0 are scored; "above" (2.0) now fails
    assert res.kept == ["late"]
    assert res.dropped == ["equal", "low", "above"]
    assert calls[1][1] == ["ref", "above", "late"]


def test_oracle_keeps_matching_and_drops_mismatched():
    class Oracle:
        def scores(self, image, texts):
            marked = np.all(np.asarray(image) == (255, 0, 0), axis=-1).any()
            return np.array([(10.0 if "cat" in t else 0.0) if marked else 1.0 for t in texts])

    image = Image.new("RGB", (50, 50), (20, 20, 20))
    res = filter_phrases(
        Oracle(), image, [[10, 10, 20, 20]], ["the cat"], ["grey cat", "a car", "the cat"]
    )
    assert res.kept == ["grey cat"] and res.dropped == ["a car"]


def test_empty_references_keep_everything():
    class Never:
        def scores(self, image, texts):  # pragma: no cover - must not be called
            raise AssertionError("no scoring without references")

    res = filter_phrases(Never(), Image.new("RGB", (8, 8)), [[0, 0, 4, 4]], [], ["a", "b"])
    assert res.kept == ["a", "b"] and res.dropped == []


def test_plain_vit_b32_with_openai_weights_refused():
    with pytest.raises(ValueError, match="quickgelu"):
        create_clip_scorer("ViT-B-32", "openai")


def test_batched_and_unbatched_scores_agree(tiny_scorer):
    from instructdet.models.clip_filter import ClipScorer

    texts = [f"phrase number {i}" for i in range(7)]
    single = ClipScorer(
        tiny_scorer.model, tiny_scorer.preprocess, tiny_scorer.tokenizer, batch_size=1
    )
    image = _image()
    np.testing.assert_allclose(
        single.scores(image, texts), tiny_scorer.scores(image, texts), rtol=1e-4, atol=1e-4
    )
    assert single.text_forwards == 7
