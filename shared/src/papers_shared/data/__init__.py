"""Small real datasets embedded in installed packages (no download)."""

from papers_shared.data.digits import load_digits

__all__ = ["load_digits"]
