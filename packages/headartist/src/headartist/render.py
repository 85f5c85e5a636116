"""A pure-PyTorch differentiable triangle rasteriser (CPU or GPU): a z-buffer over
(triangle, pixel-in-bounding-box) pairs, then perspective-correct barycentrics recomputed with
autograd for the winning triangle, so gradients reach vertex positions and attributes. Pixel
centres are at (i + 0.5) / W; image row 0 is NDC y = -1 (with a projection whose P[1,1] is
negative, as threestudio's, row 0 is the top). Opacity is the hard coverage mask: no
anti-aliasing yet."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["rasterize", "render_normals", "vertex_normals"]


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Normalised sum of the face cross products at each vertex; a degenerate one is (0,0,1)."""
    tri = verts[faces]
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = torch.zeros_like(verts).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    norm = vn.norm(dim=-1, keepdim=True)
    fallback = torch.tensor([0.0, 0.0, 1.0], dtype=verts.dtype, device=verts.device)
    return torch.where(norm > 1e-20, vn / norm.clamp_min(1e-20), fallback)


def rasterize(clip: Tensor, faces: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """clip (V,4) homogeneous positions -> (tri_id (H,W) long, -1 for background; bary (H,W,3),
    differentiable w.r.t. ``clip``)."""
    w = clip[:, 3:4]
    ndc = clip[:, :3] / w
    sx = (ndc[:, 0] + 1) * 0.5 * width
    sy = (ndc[:, 1] + 1) * 0.5 * height
    screen = torch.stack([sx, sy], dim=-1)
    with torch.no_grad():
        tri = screen[faces]  # (F,3,2)
        lo = torch.floor(tri.min(dim=1).values - 0.5).long()
        hi = torch.ceil(tri.max(dim=1).values - 0.5).long()
        x0, y0 = lo[:, 0].clamp(0, width - 1), lo[:, 1].clamp(0, height - 1)
        x1, y1 = hi[:, 0].clamp(0, width - 1), hi[:, 1].clamp(0, height - 1)
        nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
        n = nx * ny
        fid = torch.repeat_interleave(torch.arange(len(faces), device=clip.device), n)
        start = torch.cumsum(n, 0) - n
        local = torch.arange(int(n.sum()), device=clip.device) - start[fid]
        px = x0[fid] + local % nx[fid]
        py = y0[fid] + local // nx[fid]
        p = torch.stack([px + 0.5, py + 0.5], dim=-1).to(clip.dtype)
        a, b, c = tri[fid, 0], tri[fid, 1], tri[fid, 2]

        def edge(u: Tensor, v: Tensor, q: Tensor) -> Tensor:
            return (v[:, 0] - u[:, 0]) * (q[:, 1] - u[:, 1]) - (v[:, 1] - u[:, 1]) * (
                q[:, 0] - u[:, 0]
            )

        area = edge(a, b, c)
        l0, l1, l2 = edge(b, c, p) / area, edge(c, a, p) / area, edge(a, b, p) / area
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (area.abs() > 1e-12)
        z = ndc[faces][fid, :, 2]
        depth = l0 * z[:, 0] + l1 * z[:, 1] + l2 * z[:, 2]
        fid, pix, depth = fid[inside], (py * width + px)[inside], depth[inside]
        best = torch.full((height * width,), float("inf"), dtype=depth.dtype, device=clip.device)
        best = best.scatter_reduce(0, pix, depth, reduce="amin")
        win = depth <= best[pix]
        tri_id = torch.full((height * width,), -1, dtype=torch.long, device=clip.device)
        tri_id = tri_id.scatter_reduce(0, pix[win], fid[win], reduce="amax")
    covered = tri_id >= 0
    bary = torch.zeros(height * width, 3, dtype=clip.dtype, device=clip.device)
    if covered.any():
        idx = covered.nonzero().squeeze(1)
        f = faces[tri_id[idx]]
        q = torch.stack(
            [(idx % width).to(clip.dtype) + 0.5, (idx // width).to(clip.dtype) + 0.5], -1
        )
        A, B, C = screen[f[:, 0]], screen[f[:, 1]], screen[f[:, 2]]

        def edge_g(u: Tensor, v: Tensor, r: Tensor) -> Tensor:
            return (v[:, 0] - u[:, 0]) * (r[:, 1] - u[:, 1]) - (v[:, 1] - u[:, 1]) * (
                r[:, 0] - u[:, 0]
            )

        ar = edge_g(A, B, C)
        lam = torch.stack(
            [edge_g(B, C, q), edge_g(C, A, q), edge_g(A, B, q)], dim=-1
        ) / ar.unsqueeze(-1)
        persp = lam / w[f].squeeze(-1)  # perspective-correct
        bary = bary.index_put((idx,), persp / persp.sum(-1, keepdim=True))
    return tri_id.view(height, width), bary.view(height, width, 3)


def render_normals(
    verts: Tensor,
    faces: Tensor,
    mvp: Tensor,
    height: int,
    width: int,
    albedo: Callable[[Tensor], Tensor] | None = None,
    background: Tensor | None = None,
) -> dict[str, Tensor]:
    """``opacity`` (H,W,1) hard mask and ``comp_normal`` (H,W,3): world-space interpolated vertex
    normals, normalised, mapped to (n+1)/2 on the foreground and 0 on the background. With
    ``albedo`` (a map from (N,3) world positions to (N,3) colours in [0,1]) also ``comp_rgb`` =
    lerp(background, albedo(interpolated position), mask), no shading."""
    clip = torch.cat([verts, torch.ones_like(verts[:, :1])], dim=-1) @ mvp.T
    tri_id, bary = rasterize(clip, faces, height, width)
    mask = (tri_id >= 0).unsqueeze(-1).to(verts.dtype)
    vn = vertex_normals(verts, faces)
    f = faces[tri_id.clamp_min(0)]  # (H,W,3)
    n = (vn[f] * bary.unsqueeze(-1)).sum(dim=-2)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = {"opacity": mask, "comp_normal": (n + 1) * 0.5 * mask}
    if albedo is not None:
        pos = (verts[f] * bary.unsqueeze(-1)).sum(dim=-2)
        rgb = albedo(pos.reshape(-1, 3)).reshape(height, width, 3)
        bg = background if background is not None else torch.zeros(3, dtype=verts.dtype)
        out["comp_rgb"] = torch.lerp(bg.to(rgb).expand_as(rgb), rgb, mask)
    return out
