from __future__ import annotations

import math

import torch
from headartist.geometry import marching_tets, regular_tet_grid
from headartist.render import render_normals


def _sphere(r=0.6, res=24):
    verts, tets = regular_tet_grid(res)
    pos = verts * 2 - 1
    return marching_tets(pos, tets, r - pos.norm(dim=-1))


def test_sphere_coverage_and_centre_normal():
    points, faces = _sphere()
    out = render_normals(points.detach(), faces, torch.eye(4), 64, 64)
    cover = out["opacity"].mean().item()
    assert abs(cover / (math.pi * 0.36 / 4) - 1) < 0.05
    # identity MVP looks down -z in NDC: the nearest surface (smallest z) faces -z
    n = out["comp_normal"][32, 32] * 2 - 1
    assert n[2].item() < -0.95
    assert out["comp_normal"][0, 0].abs().sum() == 0


def test_vertex_gradient_matches_finite_differences():
    torch.manual_seed(0)
    verts = torch.tensor(
        [[-0.613, -0.487, 0.1], [0.707, -0.391, 0.2], [0.013, 0.693, 0.0], [0.097, 0.011, 0.5]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 3], [1, 2, 3], [2, 0, 3]])
    # generic positions: no pixel centre lies on an edge (the winning face changes there)
    weight = torch.rand(32, 32, 3, dtype=torch.float64)
    mvp = torch.eye(4, dtype=torch.float64)

    def f(v):
        return (render_normals(v, faces, mvp, 32, 32)["comp_normal"] * weight).sum()

    v = verts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(v), v)
    assert grad.abs().sum() > 0
    eps = 1e-6
    for i, j in [(0, 0), (1, 1), (2, 2), (3, 2), (3, 0)]:
        vp, vm = verts.clone(), verts.clone()
        vp[i, j] += eps
        vm[i, j] -= eps
        fd = (f(vp) - f(vm)) / (2 * eps)
        assert math.isclose(grad[i, j].item(), fd.item(), rel_tol=1e-4, abs_tol=1e-6)


def test_albedo_gradients_reach_attribute_network():
    points, faces = _sphere(res=12)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Sigmoid()
    )
    bg = torch.tensor([0.58, 0.47, 0.41])
    out = render_normals(points.detach(), faces, torch.eye(4), 32, 32, albedo=net, background=bg)
    rgb = out["comp_rgb"]
    assert rgb.shape == (32, 32, 3)
    torch.testing.assert_close(rgb[0, 0], bg)
    rgb.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
