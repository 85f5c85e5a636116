"""ETRIS: Bridger adapters for parameter-efficient referring image segmentation."""

from etris._version import __version__

__all__ = ["__version__"]
