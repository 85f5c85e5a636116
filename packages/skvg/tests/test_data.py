import json

import pytest
from PIL import Image
from skvg.augment import eval_transform, swap_left_right, train_transform, unletterbox
from skvg.boxes import center_to_xywh_tl, center_to_xyxy, convention_diagnostic, xyxy_to_center
from skvg.data.annotations import (
    load_annotations,
    split_statistics,
    to_transvg_records,
    validate_annotations,
)
from skvg.data.linguistic import entity_token_mask, target_mentions


def _write(tmp_path, records):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("0.png", "1.png"):
        Image.new("RGB", (40, 30)).save(tmp_path / "images" / name)
    (tmp_path / "annotations.json").write_text(json.dumps(records))
    return tmp_path


def _records():
    rec = {
        "image_name": "0.png",
        "knowledge": "Ann is on the left.",
        "ref_exp": "Ann",
        "bbox": {"x": 10.0, "y": 10.0, "width": 8.0, "height": 6.0},
    }
    import copy

    def r(**kw):
        return {**copy.deepcopy(rec), **kw}

    return {
        "train": [r(), r(ref_exp="Bob", image_name="1.png")],
        "val": [r(ref_exp="Cid")],
        "test": [
            r(ref_exp=q, level=lv) for q, lv in (("a", "Easy"), ("b", "medium "), ("c", "hard"))
        ],
    }


def test_loader_counts_levels_and_validator(tmp_path):
    root = _write(tmp_path, _records())
    data = load_annotations(root)
    stats = split_statistics(data)
    assert [stats[s]["records"] for s in ("train", "val", "test")] == [2, 1, 3]
    assert stats["test"]["levels"] == {"easy": 1, "hard": 1, "medium": 1}
    assert validate_annotations(_records(), images_dir=root / "images") == []
    bad = _records()
    bad["train"][0]["image_name"] = "9.png"
    bad["train"][1]["bbox"]["width"] = 0
    bad["val"][0]["extra"] = 1
    found = [str(p) for p in validate_annotations(bad, images_dir=root / "images")]
    assert any("train[0]" in p and "9.png" in p for p in found)
    assert any("train[1]" in p and "bbox" in p for p in found)
    assert not any("val[0]" in p for p in found)  # extra keys only matter in strict mode
    assert any(
        "val[0]" in p and "unexpected keys" in p
        for p in map(str, validate_annotations(bad, strict=True))
    )
    bad["train"][0].pop("ref_exp")
    (tmp_path / "annotations.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="malformed"):
        load_annotations(root)
    (tmp_path / "annotations.json").write_text(json.dumps({"train": [], "extra": []}))
    with pytest.raises(ValueError, match="unknown top-level keys"):
        load_annotations(root)


def test_box_round_trip_and_transvg_record():
    box = {"x": 10.7, "y": 20.2, "width": 5.0, "height": 8.0}
    xyxy = center_to_xyxy(box)
    assert xyxy == pytest.approx([8.2, 16.2, 13.2, 24.2])
    assert xyxy_to_center(xyxy) == pytest.approx(box)
    assert center_to_xywh_tl(box) == [8.0, 16.0, 5.0, 8.0]  # top-left truncated to int
    rec = {"image_name": "3.jpg", "knowledge": "K.", "ref_exp": "Q", "bbox": box}
    assert to_transvg_records([rec]) == [["3.jpg", None, [8.0, 16.0, 5.0, 8.0], "Q. K.", None]]
    diag = convention_diagnostic(
        [{"image_name": "a", "bbox": {"x": 2, "y": 2, "width": 10, "height": 10}}], {"a": (20, 20)}
    )
    assert diag == {"center": 0.0, "topleft": 1.0}


def test_flip_swaps_left_right_in_both_texts_and_mirrors_box():
    import random

    assert (
        swap_left_right("the man on the left, right of leftover")
        == "the man on the right, left of leftover"
    )
    image = Image.new("RGB", (100, 50))
    box = [10.0, 5.0, 30.0, 25.0]
    for seed in range(30):
        s = train_transform(
            image,
            box,
            "Left man",
            "He stands left of the right tree.",
            size=128,
            rng=random.Random(seed),
            use_color=False,
        )
        if "right" in s["query"]:
            assert s["knowledge"] == "he stands right of the left tree."
            break
    else:  # pragma: no cover - 30 coin flips
        raise AssertionError("no flip in 30 draws")
    flipped = random.Random(0)
    image2 = Image.new("RGB", (128, 64))
    out = eval_transform(image2, [0, 0, 32, 16], "q", "k", size=128)
    assert out["pixel_mask"][:32].all() and not out["pixel_mask"][64].any()  # padded top rows
    assert unletterbox(out["target"], out["letterbox"]) == pytest.approx([0, 0, 32, 16], abs=1e-4)
    del flipped


def test_target_mentions_and_token_mask():
    q, k = "Bruce's enemy Brandon", "Brandon hates Bruce. Brandon wears red."
    spans = target_mentions(q, k)
    text = f"{q}. {k}"
    assert [text[s:e] for s, e in spans] == ["Brandon"] * 3
    assert target_mentions("the doctor", "anna is the doctor.", names=["anna"]) == [(0, 10)]
    clusters = [[(0, 4)], [(12, 16), (40, 44)]]
    assert target_mentions("x y z text", "b", clusters=clusters) == [(0, 4)]
    assert entity_token_mask([(0, 0), (0, 5), (6, 9), (0, 0)], [(6, 9)]) == [
        False,
        False,
        True,
        False,
    ]


def test_generator_coreference_clusters_drive_the_entity_mask(tmp_path):
    import random

    from skvg.data.linguistic import target_mentions
    from skvg.data.synthetic import SceneConfig, coreference_clusters, make_scene

    cfg = SceneConfig(96, 3, 32, grid=True, num_names=4, num_colours=3)
    _, rec, boxes = make_scene(random.Random(3), cfg, "medium")
    assert all(b[0] % 32 == 0 and b[1] % 32 == 0 for b in boxes)
    text = f"{rec['ref_exp']}. {rec['knowledge']}"
    spans = target_mentions(rec["ref_exp"], rec["knowledge"], clusters=coreference_clusters(rec))
    mentions = {text[s:e] for s, e in spans}
    name = next(m for m in mentions if m != rec["ref_exp"])
    assert rec["ref_exp"] in mentions and f"{name} is {rec['ref_exp']}." in rec["knowledge"]
    # the whole cluster: every occurrence of the name, and the role phrase
    assert len(spans) == text.count(name) + text.count(rec["ref_exp"])
    with pytest.raises(ValueError):
        SceneConfig(64, 5, 32, grid=True)
