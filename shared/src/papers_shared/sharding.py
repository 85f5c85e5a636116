"""``--shard i/n`` for long data jobs, so any job scheduler can fan them out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["parse_shard", "take_shard"]

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shard must look like 'i/n' with whole numbers, e.g. '0/4', got {text!r}")
    index, count = int(parts[0]), int(parts[1])
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index must satisfy 0 <= i < n, got {index}/{count}")
    return index, count


def take_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item starting at ``index`` (round robin keeps shards balanced)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index must satisfy 0 <= i < n, got {index}/{count}")
    return list(items[index::count])
