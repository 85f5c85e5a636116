"""Typed configuration of the InDET instruction-generation pipeline.

Defaults are the paper's settings (InstructDET, ICLR 2024, Sec. 3 and Appendix; the released
pipeline configuration): CLIP filter alpha = 2 and tolerance 1.5 logit units, DBSCAN eps = 5 on
BERT pooler outputs, conjunctions of 2 or 3 objects, three visual-prompt requests per object.
:meth:`PipelineConfig.from_official_yaml` also reads the keys of the released YAML configuration.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GenerationConfig", "PipelineConfig", "STAGES"]

#: Pipeline stages in the paper's order (Sec. 3.1-3.3).
STAGES: tuple[str, ...] = (
    "caption",  # A1: VLM caption of the whole image
    "llm_phrases",  # A2 + A3: LLM phrases per object from caption + boxes, parsed
    "vlm_phrases",  # local pipeline: red box drawn, VLM describes the boxed object
    "clip_filter",  # drop generated phrases that match the object worse than its human ones
    "shared_phrases",  # D1: phrases shared by several objects become multi-object instructions
    "clusters",  # D2: text-embedding clusters of objects (DBSCAN)
    "summaries",  # D3: LLM summary of what each cluster has in common
    "cluster_filter",  # D4: CLIP filter of the summaries, member by member
    "conjunctions",  # D5: "and" / "," joins of single-object expressions
    "levels",  # complexity level 0-5 of every instruction
)


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(names)}")


@dataclass
class GenerationConfig:
    """Sampling settings of one foundation-model request."""

    temperature: float = 0.7
    """Sampling temperature; below 1e-5 decoding is greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    repetition_penalty: float = 1.0
    """Repetition penalty (1.0 = none)."""
    max_new_tokens: int = 1024
    """Longest answer in tokens."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5

    def as_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        _check_keys(cls, data)
        return cls(**data)


def _caption_gen() -> GenerationConfig:
    return GenerationConfig(temperature=0.5, max_new_tokens=1024)


def _llm_gen() -> GenerationConfig:
    return GenerationConfig(temperature=0.7, top_p=1.0, repetition_penalty=1.0, max_new_tokens=1024)


def _vlm_gen() -> GenerationConfig:
    return GenerationConfig(temperature=1.0, max_new_tokens=30)


@dataclass
class PipelineConfig:
    """Every switch and constant of the InDET pipeline (paper defaults)."""

    seed: int = 0
    """One seed for every random choice; each record draws from a stream derived from
    (seed, stage, record key), so shards reproduce the full run exactly."""
    stages: tuple[str, ...] = STAGES
    """Stages to run, a subset of STAGES kept in the paper's order."""
    caption_hints: bool = True
    """Append "including objects: <first expression of each object>" to the caption request."""
    caption_repeat: int = 1
    """Captions per image, joined by newlines."""
    caption_generation: GenerationConfig = field(default_factory=_caption_gen)
    """Sampling of the caption VLM (T=0.5, 1024 new tokens)."""
    llm_generation: GenerationConfig = field(default_factory=_llm_gen)
    """Sampling of the LLM for phrases, summaries and levels (T=0.7, top_p=1, 1024 new tokens)."""
    vlm_generation: GenerationConfig = field(default_factory=_vlm_gen)
    """Sampling of the visual-prompt VLM (T=1.0, 30 new tokens, one beam)."""
    local_prompts_per_object: int = 3
    """Visual-prompt requests per object, drawn without replacement from the request set."""
    single_only: bool = True
    """Visual prompts only for single-box objects; multi-box objects get none."""
    share_conversation: bool = False
    """Send an object's visual-prompt requests in one accumulating chat (the released code's
    behaviour) instead of independent chats."""
    inclusive_lower: bool = False
    """Line-width bins with inclusive lower bounds (the released fine-tuning loader) instead of the
    strict bounds of the released inference code."""
    clip_alpha: float = 2.0
    """alpha in h(t) = alpha * s(I_b, t) - s(I, t) (paper range 1-2)."""
    clip_tolerance: float = 1.5
    """tau: a generated phrase survives when h(t) > min_r h(r) - tau (logit units)."""
    clip_batch_size: int = 64
    """Phrases scored per text forward pass."""
    dbscan_eps: float = 5.0
    """DBSCAN neighbourhood radius on the text embeddings (embedder-specific, typically 1.5-8)."""
    dbscan_min_samples: int = 2
    """DBSCAN core-point size."""
    conjunction_sizes: tuple[int, ...] = (2, 3)
    """Numbers of objects joined by a conjunction."""
    conjunction_max_combos: int = 2
    """Object combinations sampled per image."""
    conjunction_draws: int = 2
    """Joined expressions drawn per combination."""
    conjunction_and_prob: float = 0.5
    """Probability of joining with " and " rather than ", "."""
    conjunction_min_words: int = 2
    """Shortest original expression (words) usable in a conjunction."""
    conjunction_max_words: int = 12
    """Longest original expression (words) usable in a conjunction."""
    official_level_wrapping: bool = False
    """Wrap the level task description in the "grade description" form as the released code does."""
    export_intersections: bool = False
    """Also export the shared-phrase clusters (the released exporter drops them)."""
    checkpoint_every: int = 16
    """Records between atomic rewrites of a stage's partial output (resume granularity)."""

    def __post_init__(self) -> None:
        for name in ("caption_generation", "llm_generation", "vlm_generation"):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, GenerationConfig.from_dict(value))
        self.stages = tuple(self.stages)
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; valid stages are {list(STAGES)}")
        self.stages = tuple(s for s in STAGES if s in self.stages)
        self.conjunction_sizes = tuple(int(n) for n in self.conjunction_sizes)
        if not self.conjunction_sizes or min(self.conjunction_sizes) < 2:
            raise ValueError(
                f"conjunction_sizes must be whole numbers >= 2, got {self.conjunction_sizes}"
            )
        positive = {
            "caption_repeat": self.caption_repeat,
            "local_prompts_per_object": self.local_prompts_per_object,
            "clip_batch_size": self.clip_batch_size,
            "dbscan_min_samples": self.dbscan_min_samples,
            "checkpoint_every": self.checkpoint_every,
            "conjunction_draws": self.conjunction_draws,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.conjunction_max_combos < 0:
            raise ValueError(
                f"conjunction_max_combos must be >= 0, got {self.conjunction_max_combos}"
            )
        if self.dbscan_eps <= 0:
            raise ValueError(f"dbscan_eps must be > 0, got {self.dbscan_eps}")
        if self.clip_alpha <= 0:
            raise ValueError(f"clip_alpha must be > 0, got {self.clip_alpha}")
        if self.clip_tolerance < 0:
            raise ValueError(f"clip_tolerance must be >= 0, got {self.clip_tolerance}")
        if not 0 <= self.conjunction_and_prob <= 1:
            raise ValueError(
                f"conjunction_and_prob must be in [0, 1], got {self.conjunction_and_prob}"
            )
        if not 1 <= self.conjunction_min_words <= self.conjunction_max_words:
            raise ValueError(
                "need 1 <= conjunction_min_words <= conjunction_max_words, got "
                f"{self.conjunction_min_words} and {self.conjunction_max_words}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stages"] = list(self.stages)
        out["conjunction_sizes"] = list(self.conjunction_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Build from a plain dict; unknown keys raise ``ValueError`` naming the valid ones."""
        _check_keys(cls, data)
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        """Read a JSON or YAML file with this class's keys, or the released YAML layout."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no pipeline config at {path}")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping, got {type(data).__name__}")
        official = {"use_global_ppl", "use_local_ppl", "filter_config", "multi_object"}
        if official & set(data):
            return cls.from_official_yaml(data)
        return cls.from_dict(data)

    @classmethod
    def from_official_yaml(cls, data: dict[str, Any]) -> PipelineConfig:
        """Map the released YAML configuration's keys onto a config.

        Read: ``use_global_ppl``, ``use_local_ppl``, ``find_inter``, ``use_cluster``,
        ``use_conjunction``, ``use_group``, ``llava_config.hint/repeat``,
        ``llama_config.repetition_penalty/max_new_tokens``, ``local_ppl_config.single_only``,
        ``filter_config.CLIP.alpha/tlr``, ``multi_object.cluster.DBSCAN.eps`` and
        ``multi_object.conjunction.num_scale``. Paths to models and prompt files are returned
        by :func:`official_yaml_paths`, not stored here.
        """
        stages = list(STAGES)

        def drop(flag: str, *names: str) -> None:
            if data.get(flag, True) is False:
                for name in names:
                    if name in stages:
                        stages.remove(name)

        drop("use_global_ppl", "llm_phrases")
        drop("use_local_ppl", "vlm_phrases")
        drop("find_inter", "shared_phrases")
        drop("use_cluster", "clusters", "summaries", "cluster_filter")
        drop("use_conjunction", "conjunctions")
        drop("use_group", "levels")
        kwargs: dict[str, Any] = {"stages": tuple(stages)}
        llava = data.get("llava_config") or {}
        if "hint" in llava:
            kwargs["caption_hints"] = bool(llava["hint"])
        if "repeat" in llava:
            kwargs["caption_repeat"] = int(llava["repeat"])
        llama = data.get("llama_config") or {}
        gen = _llm_gen()
        if "repetition_penalty" in llama:
            gen.repetition_penalty = float(llama["repetition_penalty"])
        if "max_new_tokens" in llama:
            gen.max_new_tokens = int(llama["max_new_tokens"])
        kwargs["llm_generation"] = gen
        local = data.get("local_ppl_config") or {}
        if "single_only" in local:
            kwargs["single_only"] = bool(local["single_only"])
        clip = (data.get("filter_config") or {}).get("CLIP") or {}
        if "alpha" in clip:
            kwargs["clip_alpha"] = float(clip["alpha"])
        if "tlr" in clip:
            kwargs["clip_tolerance"] = float(clip["tlr"])
        multi = data.get("multi_object") or {}
        dbscan = (multi.get("cluster") or {}).get("DBSCAN") or {}
        if "eps" in dbscan:
            kwargs["dbscan_eps"] = float(dbscan["eps"])
        conj = multi.get("conjunction") or {}
        if "num_scale" in conj:
            kwargs["conjunction_sizes"] = tuple(int(n) for n in conj["num_scale"])
        return cls(**kwargs)


def official_yaml_paths(data: dict[str, Any]) -> dict[str, str]:
    """Model and prompt paths named in the released YAML layout (absent keys are left out)."""
    out: dict[str, str] = {}
    llava = data.get("llava_config") or {}
    if llava.get("model_path"):
        out["caption_model"] = str(llava["model_path"])
    llama = data.get("llama_config") or {}
    if llama.get("model_path"):
        out["llm_model"] = str(llama["model_path"])
    for task, spec in (llama.get("tasks") or {}).items():
        spec = spec or {}
        if spec.get("task_des"):
            out[f"{task}.task_des"] = str(spec["task_des"])
        if spec.get("seed_path"):
            out[f"{task}.seed_path"] = str(spec["seed_path"])
    clip = (data.get("filter_config") or {}).get("CLIP") or {}
    if clip.get("model_path"):
        out["clip_model"] = str(clip["model_path"])
    dbscan = ((data.get("multi_object") or {}).get("cluster") or {}).get("DBSCAN") or {}
    if dbscan.get("model_path"):
        out["embedder_model"] = str(dbscan["model_path"])
    return out
