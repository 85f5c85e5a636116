import pytest
import torch
from skvg.evaluate import acc_at, evaluate, iou
from skvg.losses import grounding_loss, matching_loss, proposal_targets


def test_iou_cases():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    half = iou([0, 0, 10, 10], [0, 0, 10, 5])
    assert half == pytest.approx(0.5)
    assert acc_at([half]) == 1.0  # IoU exactly 0.5 counts


def test_per_level_accuracy_by_hand():
    def rec(level):
        return {
            "image_name": "a",
            "bbox": {"x": 5, "y": 5, "width": 10, "height": 10},
            "level": level,
        }

    records = [
        rec("easy"),
        rec("easy"),
        rec("medium"),
        rec("hard"),
        rec("hard"),
        {**rec("x"), "level": None},
    ]
    hit = {"x": 5, "y": 5, "width": 10, "height": 10}
    miss = {"x": 50, "y": 50, "width": 10, "height": 10}
    preds = [
        {"index": 0, "bbox": hit},
        {"index": 1, "bbox": miss},
        {"index": 2, "bbox": hit},
        {"index": 3, "bbox": hit},
        {"index": 5, "bbox": hit},
    ]  # index 4 missing = wrong
    out = evaluate(preds, records)
    assert out["all"] == pytest.approx(4 / 6) and out["n_all"] == 6
    assert out["easy"] == 0.5 and out["medium"] == 1.0 and out["hard"] == 0.5
    with pytest.raises(ValueError, match="outside"):
        evaluate([{"index": 9, "bbox": hit}], records)


def test_grounding_loss_by_hand():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    out = grounding_loss(pred, target)
    assert float(out["loss"]) == pytest.approx(0.0, abs=1e-6)
    shifted = torch.tensor([[0.6, 0.5, 0.2, 0.2]])
    out = grounding_loss(shifted, target)
    # L1 = 0.1; boxes [0.5,0.4,0.7,0.6] vs [0.4,0.4,0.6,0.6]: IoU = 0.02/0.06, hull = union -> GIoU = 1/3
    assert float(out["l1"]) == pytest.approx(0.1, abs=1e-6)
    assert float(out["giou"]) == pytest.approx(2 / 3, abs=1e-5)


def test_proposal_targets_and_matching_loss():
    boxes = torch.tensor(
        [[[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 1, 1], [2, 2, 3, 3]]], dtype=torch.float
    )
    gt = torch.tensor([[21, 21, 30, 30], [50, 50, 60, 60]], dtype=torch.float)
    targets = proposal_targets(boxes, gt)
    assert targets.tolist() == [1, -1]
    scores = torch.tensor([[0.0, 5.0], [1.0, 0.0]], requires_grad=True)
    loss = matching_loss(scores, targets)
    assert float(loss) == pytest.approx(
        float(torch.nn.functional.cross_entropy(scores[:1], targets[:1]))
    )
    loss.backward()
    assert scores.grad is not None and float(scores.grad[1].abs().sum()) == 0.0  # skipped sample
