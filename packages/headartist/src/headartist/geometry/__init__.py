"""Geometry: a procedural regular tetrahedral grid and differentiable marching tetrahedra."""

from headartist.geometry.tets import marching_tets, mesh_area_volume, regular_tet_grid

__all__ = ["marching_tets", "mesh_area_volume", "regular_tet_grid"]
