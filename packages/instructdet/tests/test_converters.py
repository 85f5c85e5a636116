import json
import pickle

import pytest
from instructdet.data.converters import (
    from_detection,
    from_flickr30k,
    from_refcoco_raw,
    from_seqtr,
    load_refs_pickle,
)


def _instances():
    return {
        "images": [
            {"id": 7, "height": 100, "width": 120, "file_name": "COCO_train2014_000000000007.jpg"}
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [1, 2, 30, 40], "category_id": 3, "iscrowd": 0},
            {"id": 2, "image_id": 7, "bbox": [50, 10, 20, 20], "category_id": 4, "iscrowd": 0},
            {"id": 3, "image_id": 7, "bbox": [0, 0, 5, 5], "category_id": 4, "iscrowd": 1},
        ],
        "categories": [{"id": 3, "name": "person"}, {"id": 4, "name": "dog"}],
    }


def test_refcoco_raw(tmp_path):
    refs = [
        {
            "ref_id": 0,
            "ann_id": 1,
            "image_id": 7,
            "split": "testA",
            "category_id": 3,
            "file_name": "COCO_train2014_000000000007_1.jpg",
            "sent_ids": [0, 1],
            "sentences": [
                {"sent_id": 0, "raw": "Man Left", "sent": "man left", "tokens": ["man", "left"]},
                {"sent_id": 1, "raw": "guy", "sent": "guy", "tokens": ["guy"]},
            ],
        },
        {
            "ref_id": 1,
            "ann_id": 2,
            "image_id": 7,
            "split": "train",
            "category_id": 4,
            "file_name": "x",
            "sent_ids": [2],
            "sentences": [{"sent_id": 2, "raw": "dog", "sent": "dog"}],
        },
        {
            "ref_id": 2,
            "ann_id": 1,
            "image_id": 7,
            "split": "testA",
            "category_id": 3,
            "file_name": "x",
            "sent_ids": [3],
            "sentences": [{"sent_id": 3, "raw": "person", "sent": "person"}],
        },
    ]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs))
    (tmp_path / "instances.json").write_text(json.dumps(_instances()))
    records = from_refcoco_raw(tmp_path / "refs(unc).p", tmp_path / "instances.json", split="testA")
    assert len(records) == 1
    rec = records[0]
    assert rec["filename"] == "COCO_train2014_000000000007.jpg" and rec["width"] == 120
    assert len(rec["bboxes"]) == 1  # refs 0 and 2 share the box: merged
    assert rec["bboxes"][0]["expressions"] == ["man left", "guy", "person"]
    assert rec["hints"] == ["man left"]
    assert rec["bboxes"][0]["bbox"] == [[1.0, 2.0, 30.0, 40.0]]


def test_refs_pickle_with_classes_is_refused(tmp_path):
    import collections

    (tmp_path / "bad.p").write_bytes(pickle.dumps([collections.Counter("ab")]))
    with pytest.raises(ValueError, match="refuses"):
        load_refs_pickle(tmp_path / "bad.p")
    with pytest.raises(FileNotFoundError):
        load_refs_pickle(tmp_path / "missing.p")


def test_seqtr(tmp_path):
    data = {
        "val": [
            {
                "image_id": 7,
                "height": 100,
                "width": 120,
                "bbox": [1, 2, 3, 4],
                "mask": [],
                "expressions": ["a", "b"],
            }
        ]
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    records = from_seqtr(tmp_path / "instances.json", "val")
    assert records[0]["bboxes"][0]["expressions"] == ["a", "b"]
    with pytest.raises(ValueError, match="no split"):
        from_seqtr(tmp_path / "instances.json", "test")


def test_flickr30k(tmp_path):
    (tmp_path / "Sentences").mkdir()
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Sentences" / "42.txt").write_text(
        "[/EN#1/people A man] rides [/EN#2/other the bike] .\n[/EN#1/people The man] smiles in [/EN#3/scene the park] .\n"
    )
    (tmp_path / "Annotations" / "42.xml").write_text(
        "<annotation><size><width>200</width><height>100</height><depth>3</depth></size>"
        "<object><name>1</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>50</xmax><ymax>80</ymax></bndbox></object>"
        "<object><name>2</name><bndbox><xmin>61</xmin><ymin>1</ymin><xmax>100</xmax><ymax>40</ymax></bndbox></object>"
        "<object><name>2</name><bndbox><xmin>101</xmin><ymin>1</ymin><xmax>120</xmax><ymax>40</ymax></bndbox></object>"
        "<object><name>3</name><nobndbox>1</nobndbox></object></annotation>"
    )
    rec = from_flickr30k(tmp_path, ["42"])[0]
    objs = {o["expressions"][0]: o for o in rec["bboxes"]}
    assert set(objs) == {"man", "bike"}  # scene entity skipped, determiners dropped
    assert objs["man"]["bbox"] == [[10.0, 20.0, 39.0, 59.0]]  # 1-based corners -> xywh
    assert len(objs["bike"]["bbox"]) == 2  # one multi-box object
    assert rec["caption"].splitlines()[0] == "A man rides the bike ."


def test_detection_one_object_per_annotation(tmp_path):
    data = _instances()
    data["categories"][1]["name"] = "dog"
    records = from_detection(data)
    assert len(records[0]["bboxes"]) == 2  # the crowd box is skipped
    assert [o["expressions"] for o in records[0]["bboxes"]] == [["person"], ["dog"]]
    assert records[0]["bboxes"][0]["bboxes_init_anno"][0]["id"] == 1
    assert len(from_detection(data, max_images=0)) == 0
