"""Multi-object instructions (paper Sec. 3.2) and complexity levels (Sec. 3.3).

D1 shared phrases: U_i = deduplicated union of object i's ``expressions``, ``expressions_vlm`` and
``expressions_llm``. A phrase found in the U of two or more objects joins the group keyed by the
sorted tuple of those objects (``clusters_intsc``) and is removed from all three lists of every
member, originals included: it no longer identifies one object.

D2 clusters: each object's ``", ".join(U_i)`` is embedded and the objects of one image are clustered
with DBSCAN (eps = 5, min_samples = 2, Euclidean); every label >= 0 is a group, noise is ignored.

D3 summaries: for every group of D1 and D2 (identical member lists once), an LLM lists the properties
all members share; the answer ``Summary of common properties of given objects:\\n## p1; p2;`` is
parsed by a regex that must match exactly once, split on "; " with the last piece dropped, and
phrases naming sides or "people in the image" are removed. ``clusters`` becomes the groups with at
least one phrase.

D4: the CLIP filter applied to each cluster's phrases, member after member.

D5 conjunctions: single-box objects with at least one original expression of 2-12 words free of
" and " and ", " are combined 2 or 3 at a time; at most 2 combinations per image, 2 draws each, one
random usable expression per member, shuffled, joined by " and " (p = 0.5) or ", ".

Levels: the LLM grades every single-object phrase 0-3 (answer parsed by ``": level ([0-3])"``,
exactly one match, otherwise 1); conjunctions are level 4 and shared-property clusters level 5.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "object_phrases",
    "shared_phrases",
    "dbscan",
    "cluster_objects",
    "summary_query",
    "parse_summary",
    "merge_groups",
    "conjunctions",
    "parse_level",
    "SUMMARY_IGNORE",
    "CONJUNCTION_LEVEL",
    "CLUSTER_LEVEL",
]

SUMMARY_IGNORE: tuple[str, ...] = (
    "people in the image",
    "people in image",
    "left side",
    "right side",
    "left and right side",
    "right and left side",
    "in the middle",
    "left or right",
)
CONJUNCTION_LEVEL = 4
CLUSTER_LEVEL = 5

_SUMMARY = re.compile(r"Summary of common properties of given objects:\n\#\# (.*)")
_LEVEL = re.compile(r": level ([0-3])")


def object_phrases(obj: dict[str, Any]) -> list[str]:
    """U: the object's original, VLM and LLM expressions, first-seen order, deduplicated."""
    out: dict[str, None] = {}
    for key in ("expressions", "expressions_vlm", "expressions_llm"):
        for phrase in obj.get(key) or []:
            out.setdefault(phrase, None)
    return list(out)


def shared_phrases(record: dict[str, Any]) -> dict[str, Any]:
    """D1: move phrases shared by several objects into ``clusters_intsc`` (in place; returned)."""
    objects = record["bboxes"]
    owners: dict[str, list[int]] = {}
    for obj in objects:
        for phrase in object_phrases(obj):
            owners.setdefault(phrase, []).append(int(obj["bbox_id"]))
    groups: dict[tuple[int, ...], list[str]] = {}
    for phrase, ids in owners.items():
        if len(ids) >= 2:
            groups.setdefault(tuple(sorted(ids)), []).append(phrase)
    shared = {p for phrases in groups.values() for p in phrases}
    if shared:
        for obj in objects:
            for key in ("expressions", "expressions_vlm", "expressions_llm"):
                if key in obj:
                    obj[key] = [p for p in obj[key] if p not in shared]
    record["clusters_intsc"] = [
        {"bbox_ids": list(ids), "expressions": phrases} for ids, phrases in sorted(groups.items())
    ]
    return record


def dbscan(points: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN labels (Euclidean; -1 = noise), the classic algorithm, points visited in order.

    Equal to scikit-learn's ``DBSCAN(eps, min_samples).fit(points).labels_``: a point is core when at
    least ``min_samples`` points (itself included) lie within ``eps``.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    labels = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return labels
    dist = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    neighbours = [np.nonzero(dist[i] <= eps)[0] for i in range(n)]
    core = np.array([len(nb) >= min_samples for nb in neighbours])
    cluster = 0
    for i in range(n):
        if labels[i] != -1 or not core[i]:
            continue
        labels[i] = cluster
        stack = [i]
        while stack:
            j = stack.pop()
            if not core[j]:
                continue
            for k in neighbours[j]:
                if labels[k] == -1:
                    labels[k] = cluster
                    stack.append(int(k))
        cluster += 1
    return labels


def cluster_objects(
    record: dict[str, Any], embedder: Any, *, eps: float, min_samples: int
) -> list[list[int]]:
    """D2: groups of object ids from DBSCAN over ``", ".join(U_i)`` embeddings."""
    objects = record["bboxes"]
    if len(objects) < 2:
        return []
    texts = [", ".join(object_phrases(obj)) for obj in objects]
    labels = dbscan(np.asarray(embedder.embed(texts)), eps, min_samples)
    groups: dict[int, list[int]] = {}
    for obj, label in zip(objects, labels):
        if label >= 0:
            groups.setdefault(int(label), []).append(int(obj["bbox_id"]))
    return [groups[k] for k in sorted(groups)]


def merge_groups(*group_lists: Sequence[Sequence[int]]) -> list[list[int]]:
    """D1 groups then D2 groups, identical member lists kept once."""
    seen: dict[tuple[int, ...], None] = {}
    for groups in group_lists:
        for group in groups:
            seen.setdefault(tuple(sorted(group)), None)
    return [list(g) for g in seen]


def summary_query(record: dict[str, Any], members: Sequence[int]) -> str:
    """The D3 user query: a header, one ``## object i:`` line per member, the request."""
    lines = ["Here are the objects:"]
    for i, bbox_id in enumerate(members, 1):
        lines.append(f"## object {i}: " + ", ".join(object_phrases(record["bboxes"][bbox_id])))
    lines.append("What do all of these objects have in common?")
    return "\n".join(lines)


def parse_summary(answer: str) -> list[str]:
    """D3 parser: exactly one match, "; "-split with the last piece dropped, filtered, deduplicated."""
    matches = _SUMMARY.findall(answer)
    if len(matches) != 1:
        return []
    pieces = (matches[0] + " ").split("; ")[:-1]
    out: dict[str, None] = {}
    for piece in pieces:
        phrase = piece.strip()
        if not phrase or phrase.lower() == "none":
            continue
        if any(bad in phrase for bad in SUMMARY_IGNORE):
            continue
        out.setdefault(phrase, None)
    return list(out)


def conjunctions(
    record: dict[str, Any],
    rng: random.Random,
    *,
    sizes: Sequence[int] = (2, 3),
    max_combos: int = 2,
    draws: int = 2,
    and_prob: float = 0.5,
    min_words: int = 2,
    max_words: int = 12,
) -> list[dict[str, Any]]:
    """D5: ``[{"bbox_ids": [...], "expressions": [...]}]`` joining usable original expressions."""

    def usable(expr: str) -> bool:
        n = len(expr.split())
        return min_words <= n <= max_words and " and " not in expr and ", " not in expr

    candidates: dict[int, list[str]] = {}
    for obj in record["bboxes"]:
        if len(obj.get("bbox") or []) != 1:
            continue
        exprs = [e for e in obj.get("expressions") or [] if usable(e)]
        if exprs:
            candidates[int(obj["bbox_id"])] = exprs
    ids = sorted(candidates)
    combos = [c for n in sizes for c in itertools.combinations(ids, n)]
    if not combos:
        return []
    chosen = rng.sample(combos, min(max_combos, len(combos)))
    out = []
    for combo in chosen:
        phrases: dict[str, None] = {}
        for _ in range(draws):
            parts = [rng.choice(candidates[i]) for i in combo]
            rng.shuffle(parts)
            joiner = " and " if rng.random() < and_prob else ", "
            phrases.setdefault(joiner.join(parts), None)
        out.append({"bbox_ids": list(combo), "expressions": list(phrases)})
    return out


def parse_level(answer: str) -> int:
    """The level in ``...: level k`` when it occurs exactly once, otherwise 1."""
    matches = _LEVEL.findall(answer)
    return int(matches[0]) if len(matches) == 1 else 1
