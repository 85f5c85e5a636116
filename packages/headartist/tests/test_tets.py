from __future__ import annotations

import math

import pytest
import torch
from headartist.geometry import marching_tets, mesh_area_volume, regular_tet_grid


def test_regular_grid_counts_and_volume():
    verts, tets = regular_tet_grid(3)
    assert verts.shape == (64, 3) and tets.shape == (6 * 27, 4)
    tv = verts[tets]
    vol = torch.linalg.det(tv[:, 1:] - tv[:, :1]).abs().sum() / 6
    assert math.isclose(vol.item(), 1.0, rel_tol=1e-5)  # the tets tile the unit cube
    with pytest.raises(ValueError):
        regular_tet_grid(0)


@pytest.mark.parametrize("res", [16, 32])
def test_sphere_area_volume_and_radius(res):
    r = 0.6
    verts, tets = regular_tet_grid(res)
    pos = verts * 2 - 1  # bbox [-1, 1]^3
    sdf = (r - pos.norm(dim=-1)).requires_grad_(True)
    points, faces = marching_tets(pos, tets, sdf)
    step = 2.0 / res
    assert (points.norm(dim=-1) - r).abs().max().item() < step
    area, volume = mesh_area_volume(points, faces)
    tol = 0.08 if res == 16 else 0.03
    assert abs(area.item() / (4 * math.pi * r**2) - 1) < tol
    assert abs(volume.item() / (4 / 3 * math.pi * r**3) - 1) < tol  # positive: faces point out
    area.backward()
    assert sdf.grad is not None and sdf.grad.abs().sum() > 0


def test_gradients_reach_deformation():
    verts, tets = regular_tet_grid(8)
    offset = torch.zeros_like(verts, requires_grad=True)
    pos = (verts + offset) * 2 - 1
    sdf = 0.5 - pos.detach().norm(dim=-1)
    points, faces = marching_tets(pos, tets, sdf)
    mesh_area_volume(points, faces)[1].backward()
    assert offset.grad is not None and offset.grad.abs().sum() > 0


def test_empty_field_gives_empty_mesh():
    verts, tets = regular_tet_grid(4)
    points, faces = marching_tets(verts, tets, -torch.ones(len(verts)))
    assert points.shape == (0, 3) and faces.shape == (0, 3)
