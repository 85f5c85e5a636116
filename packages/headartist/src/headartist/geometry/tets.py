"""A procedural regular tet grid (6 tets per cube, Kuhn subdivision, so neighbouring cubes share
faces) and marching tetrahedra as DMTet uses it: a vertex is occupied when sdf > 0, and a surface
vertex sits on each edge with a sign change at p = (p_a * s_b - p_b * s_a) / (s_b - s_a)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

__all__ = ["marching_tets", "mesh_area_volume", "regular_tet_grid"]


def regular_tet_grid(res: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Vertices ((res+1)^3, 3) in [0,1]^3 and tets (6 res^3, 4) of a regular grid."""
    if res < 1:
        raise ValueError(f"res must be >= 1, got {res}")
    r = torch.arange(res + 1, device=device)
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    verts = grid.float() / res

    def vid(x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        return (x * (res + 1) + y) * (res + 1) + z

    c = torch.arange(res, device=device)
    cx, cy, cz = (a.reshape(-1) for a in torch.meshgrid(c, c, c, indexing="ij"))
    tets = []
    for perm in itertools.permutations(range(3)):
        corner = [torch.zeros_like(cx) for _ in range(3)]
        ids = [vid(cx, cy, cz)]
        for axis in perm:
            corner[axis] = corner[axis] + 1
            ids.append(vid(cx + corner[0], cy + corner[1], cz + corner[2]))
        tets.append(torch.stack(ids, dim=1))
    return verts, torch.cat(tets, dim=0)


def marching_tets(verts: Tensor, tets: Tensor, sdf: Tensor) -> tuple[Tensor, Tensor]:
    """Surface (vertices (V,3), faces (F,3)) of {sdf > 0}, differentiable w.r.t. ``verts`` (e.g.
    deformed grid positions) and ``sdf``. Faces are oriented with normals pointing out of the
    occupied region; vertices on shared edges are merged."""
    if sdf.ndim == 2:
        sdf = sdf.squeeze(-1)
    occ = sdf > 0
    count = occ[tets].sum(dim=1)
    pairs: list[Tensor] = []  # (n, k, 2) global vertex ids per crossing edge, in face order
    orient: list[Tensor] = []  # (n, 2) an occupied and an empty vertex of each face's tet
    for n_occ in (1, 3):
        sel = tets[count == n_occ]
        if sel.numel() == 0:
            continue
        o = occ[sel].int()
        order = torch.argsort(o, dim=1, descending=n_occ == 1, stable=True)
        t = torch.gather(sel, 1, order)  # odd vertex first
        odd = t[:, :1].expand(-1, 3)
        pairs.append(torch.stack([odd, t[:, 1:]], dim=-1))
        inside, outside = (t[:, 0], t[:, 1]) if n_occ == 1 else (t[:, 1], t[:, 0])
        orient.append(torch.stack([inside, outside], dim=1))
    sel = tets[count == 2]
    if sel.numel() > 0:
        order = torch.argsort(occ[sel].int(), dim=1, descending=True, stable=True)
        t = torch.gather(sel, 1, order)  # a, b occupied; c, d empty
        a, b, c, d = t.unbind(1)
        quad = [torch.stack(e, dim=1) for e in ((a, c), (a, d), (b, d), (b, c))]
        for tri in ((0, 1, 2), (0, 2, 3)):
            pairs.append(torch.stack([quad[i] for i in tri], dim=1))
            orient.append(torch.stack([a, c], dim=1))
    if not pairs:
        return verts.new_zeros(0, 3), tets.new_zeros(0, 3)
    edges = torch.cat(pairs, dim=0)  # (F, 3, 2)
    inout = torch.cat(orient, dim=0)
    n_faces = edges.shape[0]
    key = torch.sort(edges.reshape(-1, 2), dim=1).values
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    pa, pb = verts[uniq[:, 0]], verts[uniq[:, 1]]
    sa, sb = sdf[uniq[:, 0]].unsqueeze(-1), sdf[uniq[:, 1]].unsqueeze(-1)
    points = (pa * sb - pb * sa) / (sb - sa)
    faces = inverse.reshape(n_faces, 3)
    with torch.no_grad():
        tri = points[faces]
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        outward = verts[inout[:, 1]] - verts[inout[:, 0]]
        flip = (normal * outward).sum(-1) < 0
    faces = torch.where(flip.unsqueeze(-1), faces[:, [0, 2, 1]], faces)
    return points, faces


def mesh_area_volume(verts: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Surface area and signed enclosed volume (divergence theorem) of a closed mesh."""
    tri = verts[faces]
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * cross.norm(dim=-1).sum()
    volume = (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    return area, volume
