"""One progress-bar helper for the whole repo (tqdm, on stderr, off when stderr is not a TTY)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    enabled: bool | None = None,
    **tqdm_kwargs: Any,
) -> tqdm:
    """Wrap ``iterable`` in tqdm. ``enabled=None`` shows the bar only when stderr is a TTY."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **tqdm_kwargs)
