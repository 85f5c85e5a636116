"""Readers, transforms, tokenizer, the shapes generator, metrics and the loss."""

import json
import pickle

import numpy as np
import pytest
import torch
from etris.data import (
    RefJsonDataset,
    RefLmdbDataset,
    ShapesDataset,
    collate_eval,
    convert_lmdb,
    decode_lmdb_value,
    letterbox_params,
    make_shapes_sample,
    tokenize,
    unwarp_letterbox,
    warp_letterbox,
)
from etris.data.shapes import COLOURS
from etris.evaluate import RISMetrics
from etris.losses import etris_loss
from PIL import Image


def test_tokenizer_pads_with_zero_and_keeps_eot_when_truncating():
    short = tokenize("the red circle", 8)[0]
    assert short[0] == 49406 and short[4] == 49407 and short[5:].eq(0).all()
    long = tokenize("the red circle left of the blue square below the green one", 8)[0]
    assert long[0] == 49406 and long[-1] == 49407 and (long != 0).all()
    assert long.argmax() == 7


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("hw", [(60, 90), (90, 47)])
def test_letterbox_round_trip_keeps_the_mask(hw):
    mask = torch.zeros(1, *hw)
    mask[0, 10:40, 15:30] = 255
    box = letterbox_params(*hw, 64)
    warped = warp_letterbox(mask, box, "bilinear")
    assert warped.shape == (1, 64, 64)
    back = unwarp_letterbox(warped / 255, box)
    assert back.shape == (1, *hw)
    assert _iou(back[0] > 0.35, mask[0] > 0) > 0.95


def test_letterbox_round_trip_at_model_size():
    mask = torch.zeros(1, 300, 500)
    mask[0, 100:220, 50:400] = 255
    box = letterbox_params(300, 500, 416)
    back = unwarp_letterbox(warp_letterbox(mask, box, "bilinear") / 255, box)
    assert _iou(back[0] > 0.35, mask[0] > 0) > 0.99


def test_letterbox_pads_with_fill_and_centres():
    image = torch.full((3, 20, 40), 200.0)
    box = letterbox_params(20, 40, 40)
    assert (box.scale, box.offset_x, box.offset_y) == (1.0, 0.0, 10.0)
    out = warp_letterbox(image, box, "bicubic", fill=(1.0, 2.0, 3.0))
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(out[:, 20, 20], torch.full((3,), 200.0), atol=1e-3)


def test_metrics_by_hand():
    metrics = RISMetrics()
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    target = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, :2], target[0, :2] = True, True  # IoU 1 (8 / 8)
    pred[1, :2], target[1, :1] = True, True  # IoU 0.5 (4 / 8)
    metrics.update(pred, target)
    out = metrics.compute()
    assert out["mIoU"] == pytest.approx(0.75, abs=1e-6)
    assert out["oIoU"] == pytest.approx(12 / 16)
    assert out["Pr@0.5"] == 0.5  # strict: IoU 0.5 is not above 0.5
    assert out["Pr@0.9"] == 0.5
    with pytest.raises(ValueError, match="no samples"):
        RISMetrics().compute()


def test_loss_is_bce_with_nearest_resized_soft_target():
    logits = torch.randn(2, 1, 4, 4)
    target = torch.rand(2, 1, 8, 8)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[:, :, ::2, ::2])
    torch.testing.assert_close(etris_loss(logits, target), expected)
    with pytest.raises(ValueError, match="logits must be"):
        etris_loss(torch.randn(2, 4, 4), target)


def test_shapes_sample_target_has_a_same_shape_distractor():
    for seed in range(20):
        sample = make_shapes_sample(np.random.default_rng(seed), 64)
        words = sample.sentence.split()
        colour, shape = words[1], words[2]
        assert sample.caption.count(f"{colour} ") == 1  # the colour identifies the target
        assert sample.caption.count(shape) == 2  # another shape of the same kind is present
        mask = sample.mask > 0
        assert 50 < mask.sum() < 600
        target_pixels = sample.image[mask].astype(float).mean(0)
        assert np.abs(target_pixels - np.array(COLOURS[colour])).max() < 40


def test_shapes_dataset_is_deterministic_and_text_modes():
    a, b = ShapesDataset(4, seed=3), ShapesDataset(4, seed=3)
    assert torch.equal(a[2]["image"], b[2]["image"]) and a.sentences == b.sentences
    blind = ShapesDataset(4, seed=3, text="blind")
    assert torch.equal(blind[0]["mask"], a[0]["mask"])
    assert (blind.ids[:, 2:] == 0).all()


def _write_tree(root, n_refs=3):
    (root / "anns" / "refcoco").mkdir(parents=True)
    (root / "masks" / "refcoco").mkdir(parents=True)
    (root / "images").mkdir()
    refs = []
    for i in range(n_refs):
        sample = make_shapes_sample(np.random.default_rng(i), 48)
        name = f"COCO_train2014_{i:012d}.jpg"
        Image.fromarray(sample.image).save(root / "images" / name, quality=95)
        Image.fromarray(sample.mask).save(root / "masks" / "refcoco" / f"{100 + i}.png")
        refs.append(
            {
                "bbox": [0, 0, 10, 10],
                "cat": 1,
                "segment_id": 100 + i,
                "img_name": name,
                "sentences": [
                    {"idx": 0, "sent_id": 2 * i, "sent": sample.sentence},
                    {"idx": 1, "sent_id": 2 * i + 1, "sent": "the target"},
                ],
                "sentences_num": 2,
            }
        )
    (root / "anns" / "refcoco" / "val.json").write_text(json.dumps(refs))
    return refs


def test_json_dataset_train_and_eval_modes(tmp_path):
    _write_tree(tmp_path)
    train = RefJsonDataset(tmp_path, "refcoco", "val", size=64, word_len=8, mode="train")
    assert len(train) == 3
    item = train[0]
    assert item["image"].shape == (3, 64, 64) and item["ids"].shape == (8,)
    assert item["mask"].shape == (1, 64, 64) and item["mask"].min() >= 0 and item["mask"].max() <= 1
    evald = RefJsonDataset(tmp_path, "refcoco", "val", size=64, word_len=8, mode="eval")
    assert len(evald) == 6
    batch = collate_eval([evald[0], evald[1]])
    assert batch["image"].shape == (2, 3, 64, 64) and batch["orig_mask"][0].shape == (48, 48)
    assert batch["sentence"][1] == "the target"
    with pytest.raises(FileNotFoundError, match="annotation"):
        RefJsonDataset(tmp_path, "refcoco", "testA")


def _write_lmdb(path, tree_root, refs):
    import lmdb

    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    keys = []
    with env.begin(write=True) as txn:
        for i, ref in enumerate(refs):
            value = {
                "img": (tree_root / "images" / ref["img_name"]).read_bytes(),
                "mask": (tree_root / "masks" / "refcoco" / f"{ref['segment_id']}.png").read_bytes(),
                "cat": ref["cat"],
                "seg_id": ref["segment_id"],
                "img_name": ref["img_name"],
                "num_sents": 2,
                "sents": [s["sent"] for s in ref["sentences"]],
            }
            key = str(i).encode()
            keys.append(key)
            txn.put(key, pickle.dumps(value))
        txn.put(b"__keys__", pickle.dumps(keys))
        txn.put(b"__len__", pickle.dumps(len(keys)))
    env.close()


def test_lmdb_dataset_reads_the_official_layout(tmp_path):
    pytest.importorskip("lmdb")
    refs = _write_tree(tmp_path / "tree")
    path = tmp_path / "val.lmdb"
    _write_lmdb(path, tmp_path / "tree", refs)
    data = RefLmdbDataset(path, size=64, word_len=8, mode="eval")
    assert len(data) == 6
    item = data[1]
    assert item["sentence"] == "the target"
    json_item = RefJsonDataset(tmp_path / "tree", "refcoco", "val", 64, 8, "eval")[1]
    torch.testing.assert_close(item["image"], json_item["image"])
    torch.testing.assert_close(item["mask"], json_item["mask"])
    data.close()
    out = tmp_path / "copy.lmdb"
    assert convert_lmdb(path, out) == 5
    assert len(RefLmdbDataset(out, size=64, word_len=8, mode="train")) == 3


def test_lmdb_values_refuse_code_and_explain_legacy_format():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(ValueError, match="pyarrow"):
        decode_lmdb_value(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="convert-lmdb"):
        decode_lmdb_value(b"\x00\x01not a pickle")
    assert decode_lmdb_value(pickle.dumps({"a": [1, b"x"]})) == {"a": [1, b"x"]}
