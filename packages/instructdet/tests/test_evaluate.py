import pytest
from instructdet.evaluate import box_iou, evaluate_predictions


def _gt():
    return {
        "images": [
            {
                "id": 0,
                "file_name": "a",
                "height": 100,
                "width": 100,
                "expressions": ["x", "y"],
                "levels": [0, 2],
            },
            {
                "id": 1,
                "file_name": "a",
                "height": 100,
                "width": 100,
                "expressions": ["both"],
                "levels": [4],
            },
        ],
        "annotations": [
            {"id": 0, "image_id": 0, "bbox": [10, 10, 20, 20], "category_id": 1},
            {"id": 1, "image_id": 1, "bbox": [10, 10, 20, 20], "category_id": 1},
            {"id": 2, "image_id": 1, "bbox": [60, 60, 20, 20], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "object"}],
    }


def test_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 1, 1], [2, 2, 1, 1]) == 0.0


def test_perfect_predictions():
    preds = [
        {"image_id": 0, "expr_idx": 0, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 0, "expr_idx": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 1, "expr_idx": 0, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 1, "expr_idx": 0, "bbox": [60, 60, 20, 20], "score": 0.8},
    ]
    out = evaluate_predictions(_gt(), preds)
    assert out["overall"]["acc@0.5"] == 1.0
    assert out["overall"]["AP"] == pytest.approx(1.0)
    assert out["overall"]["f1"] == 1.0
    assert out["multi_target"]["AP"] == pytest.approx(1.0)
    assert set(out["per_level"]) == {"0", "2", "4"}


def test_shifted_and_missing_are_misses():
    preds = [{"image_id": 0, "expr_idx": 0, "bbox": [25, 25, 20, 20], "score": 1.0}]  # IoU < 0.5
    out = evaluate_predictions(_gt(), preds)
    assert out["overall"]["acc@0.5"] == 0.0  # expr 1 has no prediction: also a miss
    assert out["single_target"]["samples"] == 2
    assert out["overall"]["AP"] == 0.0


def test_per_set_predictions_and_bad_input():
    preds = [{"image_id": 0, "bbox": [10, 10, 20, 20], "score": 1.0}]
    out = evaluate_predictions(_gt(), preds)
    assert out["per_level"]["0"]["acc@0.5"] == 1.0 and out["per_level"]["2"]["acc@0.5"] == 1.0
    with pytest.raises(ValueError, match="either every prediction"):
        evaluate_predictions(
            _gt(), preds + [{"image_id": 0, "expr_idx": 0, "bbox": [0, 0, 1, 1], "score": 1}]
        )
    with pytest.raises(ValueError, match="lacks 'score'"):
        evaluate_predictions(_gt(), [{"image_id": 0, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_predictions(_gt(), [{"image_id": 9, "bbox": [0, 0, 1, 1], "score": 1.0}])
