import json

import numpy as np
import pytest
from instructdet.config import STAGES, PipelineConfig
from instructdet.data.export import export_indet, validate_export
from instructdet.data.records import read_jsonl
from instructdet.models.backends import TemplateLLM, TemplateVLM
from instructdet.models.embedder import HashingEmbedder
from instructdet.pipeline.runner import Pipeline, PipelineRunError, merge_shards
from PIL import Image


def _records(n=4):
    out = []
    for i in range(n):
        out.append(
            {
                "filename": f"img{i}.png",
                "height": 64,
                "width": 96,
                "image_id": i,
                "bboxes": [
                    {
                        "bbox": [[2, 2, 30, 30]],
                        "expressions": [f"red square number {i}", "square on the left"],
                    },
                    {
                        "bbox": [[50, 10, 30, 40]],
                        "expressions": ["blue block", "block on the right"],
                    },
                    {
                        "bbox": [[40, 44, 20, 18], [70, 50, 10, 10]],
                        "expressions": ["two green dots"],
                    },
                ],
            }
        )
    return out


def _loader(record):
    rng = np.random.default_rng(int(record["image_id"]))
    return Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))


def _pipeline(tiny_scorer, llm=None, **cfg):
    return Pipeline(
        PipelineConfig(dbscan_eps=1.0, **cfg),
        llm=llm or TemplateLLM(),
        caption_vlm=TemplateVLM(),
        local_vlm=TemplateVLM(),
        scorer=tiny_scorer,
        embedder=HashingEmbedder(),
        image_loader=_loader,
    )


def test_full_pipeline_keys_validity_and_determinism(tiny_scorer, tmp_path):
    out = _pipeline(tiny_scorer, seed=3).run(_records(), tmp_path / "a")
    again = _pipeline(tiny_scorer, seed=3).run(_records(), tmp_path / "b")
    assert out == again
    for stage_no, stage in enumerate(STAGES):
        assert (tmp_path / "a" / f"{stage_no:02d}_{stage}.jsonl").exists()
    rec = out[0]
    for key in ("caption", "clusters_intsc", "clusters", "clusters_conj"):
        assert key in rec
    obj = rec["bboxes"][0]
    for key in (
        "expressions_llm",
        "expressions_vlm",
        "expressions_llm_filtered",
        "expressions_llm_levels",
    ):
        assert key in obj
    assert rec["bboxes"][2]["expressions_vlm"] == []  # multi-box object: single_only
    assert len(obj["expressions_levels"]) == len(obj["expressions"])
    assert validate_export(export_indet(out)) == []
    other = _pipeline(tiny_scorer, seed=4).run_records(_records())
    assert other != [{k: v for k, v in r.items() if k != "source_index"} for r in out]


def test_shards_equal_full_run(tiny_scorer, tmp_path):
    full = _pipeline(tiny_scorer).run(_records(5), tmp_path / "full")
    parts = [
        _pipeline(tiny_scorer).run(_records(5), tmp_path / f"s{i}", shard=(i, 2)) for i in range(2)
    ]
    assert [len(p) for p in parts] == [3, 2]
    assert merge_shards(parts) == full


def test_resume_after_injected_crash(tiny_scorer, tmp_path):
    calls = {"n": 0}
    template = TemplateLLM()

    class Crashing:
        def chat(self, messages, **gen):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected crash")
            return template.chat(messages, **gen)

    crashing = _pipeline(tiny_scorer, llm=Crashing(), checkpoint_every=1)
    with pytest.raises(RuntimeError, match="injected"):
        crashing.run(_records(), tmp_path / "run")
    partial = tmp_path / "run" / "01_llm_phrases.partial.jsonl"
    assert len(read_jsonl(partial)) == 2  # two records checkpointed, file complete
    assert not (tmp_path / "run" / "01_llm_phrases.jsonl").exists()
    with pytest.raises(PipelineRunError, match="--resume"):
        _pipeline(tiny_scorer, checkpoint_every=1).run(_records(), tmp_path / "run")
    resumed = _pipeline(tiny_scorer, llm=Crashing(), checkpoint_every=1).run(
        _records(), tmp_path / "run", resume=True
    )
    clean = _pipeline(tiny_scorer, checkpoint_every=1).run(_records(), tmp_path / "clean")
    assert resumed == clean
    assert not partial.exists()
    with pytest.raises(PipelineRunError, match="other settings.*seed"):
        _pipeline(tiny_scorer, seed=9, checkpoint_every=1).run(
            _records(), tmp_path / "run", resume=True
        )
    again = _pipeline(tiny_scorer, checkpoint_every=1)
    again.run(_records(), tmp_path / "run", resume=True)
    assert again.nothing_to_do


def test_stage_switches_and_missing_models(tiny_scorer):
    cfg = PipelineConfig(stages=("llm_phrases", "conjunctions"))
    out = Pipeline(cfg, llm=TemplateLLM()).run_records(_records(1))
    assert "caption" not in out[0] and "clusters_conj" in out[0]
    assert "expressions_vlm" not in out[0]["bboxes"][0]
    with pytest.raises(ValueError, match="needs scorer"):
        Pipeline(PipelineConfig(stages=("clip_filter",)), image_loader=_loader)


def test_share_conversation_accumulates_turns(tiny_scorer):
    seen = []

    class Recorder:
        def chat(self, image, messages, **gen):
            seen.append(len(messages))
            return "The red box shows a thing."

    cfg = PipelineConfig(stages=("vlm_phrases",), share_conversation=True)
    Pipeline(cfg, local_vlm=Recorder(), image_loader=_loader).run_records(_records(1))
    assert seen[:3] == [1, 3, 5]
    seen.clear()
    cfg = PipelineConfig(stages=("vlm_phrases",))
    Pipeline(cfg, local_vlm=Recorder(), image_loader=_loader).run_records(_records(1))
    assert seen[:3] == [1, 1, 1]


def test_config_validation_and_official_yaml(tmp_path):
    with pytest.raises(ValueError, match="unknown PipelineConfig keys"):
        PipelineConfig.from_dict({"clip_alpha": 2.0, "clip_alhpa": 1})
    with pytest.raises(ValueError, match="conjunction_sizes"):
        PipelineConfig(conjunction_sizes=(1, 2))
    with pytest.raises(ValueError, match="unknown stages"):
        PipelineConfig(stages=("caption", "dance"))
    (tmp_path / "official.yaml").write_text(
        "use_local_ppl: False\nuse_cluster: False\nfilter_config:\n  CLIP:\n    alpha: 1.5\n    tlr: 2.0\n"
        "multi_object:\n  cluster:\n    DBSCAN:\n      eps: 3\n  conjunction:\n    num_scale: [2]\n"
    )
    cfg = PipelineConfig.from_file(tmp_path / "official.yaml")
    assert cfg.clip_alpha == 1.5 and cfg.clip_tolerance == 2.0 and cfg.dbscan_eps == 3.0
    assert cfg.conjunction_sizes == (2,)
    assert (
        "vlm_phrases" not in cfg.stages
        and "clusters" not in cfg.stages
        and "summaries" not in cfg.stages
    )
    round_trip = PipelineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert round_trip == cfg
