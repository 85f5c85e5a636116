import random

from instructdet.pipeline.global_stage import (
    CAPTION_REQUESTS,
    build_llm_query,
    caption_request,
    format_box,
    normalized_box,
    parse_llm_answer,
)
from instructdet.pipeline.prompts import (
    VICUNA_SYSTEM,
    build_messages,
    load_prompt_set,
    vicuna_v11_prompt,
)


def test_normalized_box_by_hand():
    # x=10, y=20, w=30, h=40 in a 100 x 200 image -> [0.1, 0.1, 0.4, 0.3]
    assert normalized_box([10, 20, 30, 40], 100, 200) == [0.1, 0.1, 0.4, 0.3]
    assert format_box([0, 0.1, 0.25, 0.5]) == "[0.0, 0.1, 0.25, 0.5]"


def test_golden_query_uses_first_box_only():
    record = {
        "width": 200,
        "height": 100,
        "caption": "Two dogs.",
        "bboxes": [
            {"bbox": [[0, 0, 50, 50], [100, 0, 10, 10]], "expressions": ["dog", "left dog"]},
            {"bbox": [[150, 50, 50, 50]], "expressions": ["cat"]},
        ],
    }
    expected = "Two dogs.\n\ndog/left dog: [0.0, 0.0, 0.25, 0.5]\ncat: [0.75, 0.5, 1.0, 1.0]"
    assert build_llm_query(record) == expected


def test_caption_request_appends_hints():
    text = caption_request(["a dog", "a cat"], random.Random(0))
    assert text.endswith(", including objects: a dog, a cat")
    assert text.split(", including")[0] in CAPTION_REQUESTS
    assert caption_request([], random.Random(0)) in CAPTION_REQUESTS


def test_messages_and_vicuna_golden(tmp_path):
    (tmp_path / "prompt").mkdir()
    (tmp_path / "seed").mkdir()
    (tmp_path / "prompt" / "instruct.txt").write_text(
        "Task line one.\nTask line two.\nOK, understood.\n"
    )
    (tmp_path / "seed" / "b.txt").write_text("query b")
    (tmp_path / "seed" / "b_des.txt").write_text("answer b")
    (tmp_path / "seed" / "a.txt").write_text("query a")
    (tmp_path / "seed" / "a_des.txt").write_text("answer a")
    prompts = load_prompt_set(tmp_path)
    assert prompts.task == "Task line one.\nTask line two."
    assert prompts.acknowledgement == "OK, understood."
    assert prompts.examples == [("query a", "answer a"), ("query b", "answer b")]  # sorted by name
    messages = build_messages(prompts, "the query")
    roles = [m["role"] for m in messages]
    assert roles == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert messages[-1]["content"] == "the query"
    two_turns = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
    ]
    assert vicuna_v11_prompt(two_turns) == "SYS USER: u1 ASSISTANT: a1</s>USER: u2 ASSISTANT:"
    assert vicuna_v11_prompt(two_turns[1:2]).startswith(VICUNA_SYSTEM + " USER: u1")


def test_level_prompt_file(tmp_path):
    (tmp_path / "prompt").mkdir()
    (tmp_path / "seed").mkdir()
    (tmp_path / "prompt" / "instruct.txt").write_text("grade things\nok\n")
    (tmp_path / "seed" / "v0.txt").write_text("cat|My grading for description cat: level 0.\n")
    prompts = load_prompt_set(tmp_path, level_format=True)
    assert prompts.examples == [
        ("grade description: cat", "My grading for description cat: level 0.")
    ]
    wrapped = build_messages(prompts, "grade description: dog", wrap_task=True)
    assert wrapped[1]["content"] == "grade description: grade things"


def test_parser_exact_partial_duplicate_unknown():
    objects = [["man", "person"], ["dog"], ["dog"], ["red car", "car"]]
    answer = (
        "[person/man]\n(1) man in blue, walking man, person in the image\n(2) man next to the dog\n"
        "[dog]\n(1) brown dog\n(2) dog on grass\n"  # two objects share the key "dog": dropped
        "[car/big truck]\n(1) car parked outside, car\n(2) car near the house\n"  # partial -> first match
        "[bicycle]\n(1) blue bicycle\n(2) bicycle by the wall\n"  # unknown key: ignored
    )
    out = parse_llm_answer(answer, objects)
    assert out[0] == [
        "man in blue",
        "walking man",
        "man next to the dog",
    ]  # generic + 1-word dropped
    assert out[1] == [] and out[2] == []
    assert out[3] == ["car parked outside", "car near the house"]  # "car" has one word


def test_partial_match_goes_to_first_intersecting_object():
    objects = [["a", "b"], ["b", "c"]]
    out = parse_llm_answer("[b/z]\n(1) first phrase\n(2) second phrase\n", objects)
    assert out == [["first phrase", "second phrase"], []]
