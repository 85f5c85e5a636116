"""HeadArtist (SIGGRAPH 2024): self score distillation guidance on diffusers modules, a
pure-PyTorch differentiable rasteriser and marching tetrahedra."""

from headartist._version import __version__
from headartist.losses import SSDGuidance, SSDOutput

__all__ = ["SSDGuidance", "SSDOutput", "__version__"]
