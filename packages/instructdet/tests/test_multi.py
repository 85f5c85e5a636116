import random

import numpy as np
import pytest
from instructdet.pipeline.multi import (
    CLUSTER_LEVEL,
    cluster_objects,
    conjunctions,
    dbscan,
    merge_groups,
    parse_level,
    parse_summary,
    shared_phrases,
    summary_query,
)


def _record():
    return {
        "filename": "x.jpg",
        "width": 100,
        "height": 100,
        "bboxes": [
            {
                "bbox_id": 0,
                "bbox": [[0, 0, 10, 10]],
                "expressions": ["red car", "car on left"],
                "expressions_llm": ["parked vehicle", "shiny car"],
                "expressions_vlm": ["the target car"],
            },
            {
                "bbox_id": 1,
                "bbox": [[50, 0, 10, 10]],
                "expressions": ["blue car"],
                "expressions_llm": ["parked vehicle", "car near tree"],
                "expressions_vlm": [],
            },
            {
                "bbox_id": 2,
                "bbox": [[80, 80, 10, 10]],
                "expressions": ["tree", "parked vehicle"],
                "expressions_llm": ["tall tree", "shiny car"],
            },
        ],
    }


def test_shared_phrases_move_and_remove_originals():
    rec = shared_phrases(_record())
    assert rec["clusters_intsc"] == [
        {"bbox_ids": [0, 1, 2], "expressions": ["parked vehicle"]},
        {"bbox_ids": [0, 2], "expressions": ["shiny car"]},
    ]
    objs = rec["bboxes"]
    assert objs[0]["expressions_llm"] == [] and objs[0]["expressions"] == ["red car", "car on left"]
    assert objs[2]["expressions"] == ["tree"]  # removed from the originals too
    assert objs[2]["expressions_llm"] == ["tall tree"]


def test_dbscan_matches_scikit_learn():
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(0)
    points = np.concatenate(
        [rng.normal(0, 0.3, (6, 4)), rng.normal(5, 0.3, (5, 4)), rng.normal(20, 1, (3, 4))]
    )
    for eps, min_samples in [(1.0, 2), (1.5, 3), (0.2, 2), (30.0, 2)]:
        ours = dbscan(points, eps, min_samples)
        ref = DBSCAN(eps=eps, min_samples=min_samples).fit(points).labels_
        assert np.array_equal(ours, ref)


def test_cluster_groups_from_injected_embeddings():
    class Fixed:
        def embed(self, texts):
            assert texts[0] == "red car, car on left, the target car, parked vehicle, shiny car"
            return np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]])

    assert cluster_objects(_record(), Fixed(), eps=5, min_samples=2) == [[0, 1]]
    assert cluster_objects(_record(), Fixed(), eps=0.5, min_samples=2) == []


def test_cluster_with_tiny_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    from instructdet.models.embedder import BertPoolerEmbedder

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "red",
        "car",
        "blue",
        "tree",
        "tall",
        ",",
        "on",
        "left",
    ]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizer(str(tmp_path / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    model = transformers.BertModel(config)
    emb = BertPoolerEmbedder(model, tokenizer)
    out = emb.embed(["red car", "tall tree"])
    assert out.shape == (2, 16) and np.all(np.abs(out) <= 1.0)  # pooler output is tanh-bounded
    groups = cluster_objects(_record(), emb, eps=100.0, min_samples=2)
    assert groups == [[0, 1, 2]]


def test_merge_groups_dedupes_identical_member_lists():
    assert merge_groups([[2, 0], [1, 3]], [[0, 2], [4, 5]]) == [[0, 2], [1, 3], [4, 5]]


def test_summary_query_and_parser():
    query = summary_query(_record(), [0, 1])
    assert "## object 1: red car, car on left, the target car, parked vehicle, shiny car" in query
    assert "## object 2: blue car, parked vehicle, car near tree" in query
    ok = "Summary of common properties of given objects:\n## cars; parked on the left side; red things; vehicles"
    # the last piece (no trailing "; ") is always dropped; side phrases are ignored
    assert parse_summary(ok) == ["cars", "red things"]
    assert parse_summary("Summary of common properties of given objects:\n## none; ") == []
    twice = ok + "\n" + ok
    assert parse_summary(twice) == []  # must match exactly once
    assert parse_summary("no summary here") == []
    assert parse_summary(
        "Summary of common properties of given objects:\n## people in the image; cars; cars; "
    ) == ["cars"]


def test_conjunction_invariants():
    record = {
        "bboxes": [
            {"bbox_id": i, "bbox": [[i, i, 5, 5]], "expressions": [f"object number {i}", "x"]}
            for i in range(5)
        ]
    }
    record["bboxes"][3]["bbox"].append([1, 1, 2, 2])  # multi-box objects are never used
    record["bboxes"][4]["expressions"] = ["cat and dog", "a, b"]  # no usable expression
    for seed in range(10):
        out = conjunctions(record, random.Random(seed))
        assert out == conjunctions(record, random.Random(seed))
        assert len(out) <= 2
        for group in out:
            assert 2 <= len(group["bbox_ids"]) <= 3
            assert set(group["bbox_ids"]) <= {0, 1, 2}
            for text in group["expressions"]:
                parts = text.split(" and ") if " and " in text else text.split(", ")
                assert len(parts) == len(group["bbox_ids"])
                assert sorted(parts) == sorted(f"object number {i}" for i in group["bbox_ids"])


def test_level_parser():
    assert (
        parse_level("My grading for description cat: it is a name, so the grade is: level 0.") == 0
    )
    assert parse_level("... : level 2 and then : level 3") == 1  # two matches -> default
    assert parse_level("I cannot grade this") == 1
    assert parse_level("x: level 7") == 1
    assert CLUSTER_LEVEL == 5
