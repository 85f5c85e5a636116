"""``--shard i/n`` for long data jobs, so any job scheduler can fan them out.

Shard indices are 0-based: ``--shard 0/4`` ... ``--shard 3/4`` cover a job split four ways.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["parse_shard", "shard_arg", "take_shard"]

T = TypeVar("T")


def _check(index: int, count: int, text: str) -> None:
    if count < 1:
        raise ValueError(f"shard count n must be >= 1, got {text!r}")
    if not 0 <= index < count:
        raise ValueError(
            f"shard index is 0-based: 0 <= i < n, got {text.strip()} "
            f"(valid: 0/{count} ... {count - 1}/{count})"
        )


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` into ``(i, n)``; ``i`` is 0-based (``0 <= i < n``).

    Raises ``ValueError`` naming the expected form and what was received.
    """
    if not isinstance(text, str):
        raise TypeError(f"shard must be a string like '0/4', got {type(text).__name__}")
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shard must look like 'i/n' with whole numbers, e.g. '0/4', got {text!r}")
    index, count = int(parts[0]), int(parts[1])
    _check(index, count, text)
    return index, count


def shard_arg(text: str) -> tuple[int, int]:
    """``type=`` for argparse: :func:`parse_shard` with argparse's one-line usage error."""
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def take_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item starting at ``index`` (round robin keeps shards balanced)."""
    _check(index, count, f"{index}/{count}")
    return list(items[index::count])
