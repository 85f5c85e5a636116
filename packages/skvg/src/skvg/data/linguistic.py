"""The linguistic structure LeViLM matches with: which mentions in "<query>. <knowledge>" refer to
the query's target entity.

Mentions are character spans in the concatenated text; clusters (lists of spans) may come from any
coreference system. Without clusters, the target is the longest capitalised (or, in lower-cased
text, the longest known) name of the query that also occurs in the knowledge, with every occurrence
as a mention; failing that, the whole query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["target_mentions", "entity_token_mask"]

Span = tuple[int, int]


def target_mentions(
    query: str,
    knowledge: str,
    clusters: Sequence[Sequence[Span]] | None = None,
    names: Sequence[str] | None = None,
) -> list[Span]:
    """Spans (in ``f"{query}. {knowledge}"``) of the mentions of the query's target entity.

    Args:
        clusters: coreference clusters over the concatenated text; the one overlapping the query
            span the most is the target.
        names: candidate entity names (used for lower-cased text); otherwise capitalised words.
    """
    qlen = len(query)
    if clusters:

        def overlap(cluster: Sequence[Span]) -> int:
            return sum(max(0, min(e, qlen) - max(s, 0)) for s, e in cluster)

        best = max(clusters, key=overlap)
        if overlap(best) > 0:
            return [(int(s), int(e)) for s, e in best]
    text = f"{query}. {knowledge}"
    if names:
        candidates = [n for n in names if re.search(rf"\b{re.escape(n)}\b", query, re.IGNORECASE)]
    else:
        candidates = re.findall(r"\b[A-Z][a-zA-Z]+\b", query)
    candidates = [
        c for c in candidates if re.search(rf"\b{re.escape(c)}\b", knowledge, re.IGNORECASE)
    ]
    if candidates:
        name = max(candidates, key=len)
        return [m.span() for m in re.finditer(rf"\b{re.escape(name)}\b", text, re.IGNORECASE)]
    return [(0, qlen)]


def entity_token_mask(offsets: Sequence[Sequence[int]], spans: Sequence[Span]) -> list[bool]:
    """True for tokens whose character offsets overlap a span (special tokens have (0, 0))."""
    out = []
    for start, end in offsets:
        out.append(end > start and any(min(end, e) > max(start, s) for s, e in spans))
    return out
