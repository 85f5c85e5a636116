from instructdet.data.converters import from_uninext
from instructdet.data.export import (
    dataset_stats,
    export_indet,
    merge_exports,
    validate_export,
    validate_records,
)


def _records():
    return [
        {
            "filename": "a.jpg",
            "height": 100,
            "width": 200,
            "bboxes": [
                {
                    "bbox_id": 0,
                    "bbox": [[0, 0, 10, 10]],
                    "expressions": ["dog"],
                    "expressions_levels": [0],
                    "expressions_vlm": ["brown dog", "dog"],
                    "expressions_vlm_levels": [1, 0],
                    "expressions_llm": ["dog near cat"],
                },  # llm phrases never graded
                {"bbox_id": 1, "bbox": [[20, 20, 10, 10], [40, 40, 5, 5]], "expressions": ["cats"]},
            ],
            "clusters": [
                {"bbox_ids": [0, 1], "expressions_llm": ["animals"], "expressions_llm_levels": [5]}
            ],
            "clusters_conj": [
                {"bbox_ids": [0, 1], "expressions": ["dog and cats"], "expressions_levels": [4]}
            ],
            "clusters_intsc": [{"bbox_ids": [0, 1], "expressions": ["pets"]}],
        }
    ]


def test_export_layout_ids_and_levels():
    data = export_indet(_records())
    assert [img["expressions"] for img in data["images"]] == [
        ["dog", "brown dog", "dog near cat"],
        ["cats"],
        ["animals"],
        ["dog and cats"],
    ]
    assert data["images"][0]["levels"] == [0, 1, -1]  # aligned, -1 where never graded
    assert "levels" not in data["images"][1]
    assert [img["id"] for img in data["images"]] == [0, 1, 2, 3]
    ann_ids = [a["id"] for a in data["annotations"]]
    assert ann_ids == list(range(len(ann_ids)))  # unique (the released exporter repeated ids here)
    boxes_per_ref = [sum(a["image_id"] == i for a in data["annotations"]) for i in range(4)]
    assert boxes_per_ref == [1, 2, 3, 3]
    assert validate_export(data) == []
    with_intsc = export_indet(_records(), export_intersections=True)
    assert with_intsc["images"][-1]["expressions"] == ["pets"]


def test_round_trip_and_merge_renumbering():
    data = export_indet(_records())
    back = from_uninext(data)
    assert len(back) == 1
    # referring sets with the same boxes merge back into one object
    exprs = {tuple(map(tuple, o["bbox"])): o["expressions"] for o in back[0]["bboxes"]}
    assert exprs[((0.0, 0.0, 10.0, 10.0),)] == ["dog", "brown dog", "dog near cat"]
    assert exprs[((0.0, 0.0, 10.0, 10.0), (20.0, 20.0, 10.0, 10.0), (40.0, 40.0, 5.0, 5.0))] == [
        "animals",
        "dog and cats",
    ]
    merged = merge_exports([data, data])
    assert [img["id"] for img in merged["images"]] == list(range(8))
    assert len({a["id"] for a in merged["annotations"]}) == len(merged["annotations"]) == 18
    assert validate_export(merged) == []
    assert dataset_stats(merged)["referring_sets"] == 8


def test_validate_reports_every_problem_with_where_and_field():
    data = export_indet(_records())
    data["images"][1]["id"] = 0  # duplicate id
    data["images"][0]["levels"] = [1]  # misaligned
    data["annotations"][0]["bbox"] = [190, 0, 50, 10]  # leaves the image
    data["annotations"].append({"id": 99, "image_id": 42, "bbox": [0, 0, 1, 1], "category_id": 1})
    problems = [str(p) for p in validate_export(data)]
    assert any("images[1]" in p and "duplicate id" in p for p in problems)
    assert any("levels" in p and "one level per expression" in p for p in problems)
    assert any("annotations[0]" in p and "leaves" in p for p in problems)
    assert any("orphan" in p and "42" in p for p in problems)
    bad = _records()
    bad[0]["bboxes"][0]["bbox"] = [[0, 0, -1, 5]]
    bad[0]["clusters"][0]["bbox_ids"] = [0, 7]
    found = [str(p) for p in validate_records(bad)]
    assert any("bboxes[0]" in p and "bbox[0]" in p for p in found)
    assert any("clusters[0]" in p and "bbox_ids" in p for p in found)
    assert validate_export([1, 2])[0].field == "<root>"
