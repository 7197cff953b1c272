"""Z-buffered point splatting for cache renders: RGB, depth, hole mask and the winning point per pixel.

Each point is a square splat of half-width r = max(0.5, splat_scale · ½ · size · f / z) pixels,
where `size` is the point's world footprint (the pixel size z/f of the view it came from), so a
cache seen from closer stays watertight and one seen from its own view maps one point to one pixel.
A pixel takes the point with the smallest key z · (1 + tie_penalty · dist), dist = pixel distance
to the splat centre: a splat centre beats a neighbour's footprint at the same depth, while a
surface clearly in front still occludes what is behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PointRender:
    """Output of `render_points`; arrays are numpy."""

    rgb: np.ndarray  # [H, W, 3] uint8 (0 in holes)
    depth: np.ndarray  # [H, W] float32 z-depth (0 in holes)
    hole: np.ndarray  # [H, W] bool, True where no point landed
    index: np.ndarray  # [H, W] int64 winning point index, -1 in holes


def _project(xyz: torch.Tensor, K: np.ndarray, w2c: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    R = torch.as_tensor(w2c[:3, :3], dtype=xyz.dtype)
    t = torch.as_tensor(w2c[:3, 3], dtype=xyz.dtype)
    cam = xyz @ R.T + t
    z = cam[:, 2]
    zs = z.clamp_min(1e-9)
    u = cam[:, 0] / zs * float(K[0, 0]) + float(K[0, 2])
    v = cam[:, 1] / zs * float(K[1, 1]) + float(K[1, 2])
    return u, v, z


def render_points(
    xyz: np.ndarray | torch.Tensor,
    rgb: np.ndarray | torch.Tensor,
    size: np.ndarray | torch.Tensor,
    K: np.ndarray,
    w2c: np.ndarray,
    width: int,
    height: int,
    splat_scale: float = 1.0,
    max_radius_px: float = 4.0,
    tie_penalty: float = 0.01,
    near: float = 1e-3,
) -> PointRender:
    """Render points [N, 3] with colours [N, 3] uint8 and footprints [N] from camera (K, w2c).

    >>> out = render_points(xyz, rgb, size, K, np.eye(4), 64, 48)
    >>> out.rgb.shape, out.hole.mean()
    """
    xyz = torch.as_tensor(np.asarray(xyz, np.float32) if not torch.is_tensor(xyz) else xyz, dtype=torch.float32)
    size = torch.as_tensor(np.asarray(size, np.float32) if not torch.is_tensor(size) else size, dtype=torch.float32)
    rgb_np = rgb.numpy() if torch.is_tensor(rgb) else np.asarray(rgb)
    H, W = height, width
    u, v, z = _project(xyz, K, w2c)
    f = 0.5 * (float(K[0, 0]) + float(K[1, 1]))
    r = (0.5 * splat_scale * size * f / z.clamp_min(1e-9)).clamp(0.5, max_radius_px)
    # only points whose splat covers a pixel centre take part (a 360° cache puts most behind or
    # beside any one view); the rest would only fill the spare off-screen slot
    on = torch.nonzero(_covers_a_pixel(u, v, z, r, W, H, near)).squeeze(1)
    key, lin, owner, zcat = _covered_pixels(u[on], v[on], z[on], r[on], W, H, tie_penalty, near)
    index, depth = _zbuffer(key, lin, on[owner], zcat, H * W)
    hole = index < 0
    out_rgb = np.take(rgb_np, np.maximum(index, 0), axis=0)
    out_rgb[hole] = 0
    return PointRender(out_rgb.reshape(H, W, 3), depth.reshape(H, W), hole.reshape(H, W), index.reshape(H, W))


def _covers_a_pixel(u: torch.Tensor, v: torch.Tensor, z: torch.Tensor, r: torch.Tensor, W: int, H: int,
                    near: float) -> torch.Tensor:
    """[N] bool: the splat of half-width r at (u, v) covers at least one pixel centre of the image
    and lies beyond `near` (the same bounds as `_covered_pixels`)."""
    return ((z > near) & (torch.ceil(u - r).clamp_min(0) <= torch.floor(u + r).clamp_max(W - 1))
            & (torch.ceil(v - r).clamp_min(0) <= torch.floor(v + r).clamp_max(H - 1)))


def _covered_pixels(u: torch.Tensor, v: torch.Tensor, z: torch.Tensor, r: torch.Tensor, W: int, H: int,
                    tp: float, near: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (point, covered pixel) pair of splats of half-width r [N] centred at (u, v) [N]:
    (key z·(1 + tp·dist), flat pixel index (H·W: off screen), owner point, z), each [P]."""
    # Each splat covers the pixel centres inside [u - r, u + r] × [v - r, v + r]. Most points cover
    # one pixel; only the rest are expanded into their pixel lists.
    x_lo = torch.ceil(u - r).clamp_min(0)
    x_hi = torch.floor(u + r).clamp_max(W - 1)
    y_lo = torch.ceil(v - r).clamp_min(0)
    y_hi = torch.floor(v + r).clamp_max(H - 1)
    nx = (x_hi - x_lo + 1).clamp_min(0)
    ny = (y_hi - y_lo + 1).clamp_min(0)
    count = torch.where(z > near, nx * ny, torch.zeros_like(nx)).long()
    # first covered pixel of every point: elementwise over all points, no gathers
    du0, dv0 = x_lo - u, y_lo - v
    key0 = torch.where(count > 0, z * (1.0 + tp * torch.sqrt(du0 * du0 + dv0 * dv0)), float("inf"))
    lin0 = torch.where(count > 0, y_lo * W + x_lo, H * W).long()  # off-screen points → a spare slot
    # the other pixels of splats wider than one pixel: one gather of the packed per-point values
    many = torch.nonzero(count > 1).squeeze(1)
    extra = count[many] - 1
    rep = torch.repeat_interleave(torch.arange(len(many)), extra)
    k = 1 + torch.arange(len(rep)) - (torch.cumsum(extra, 0) - extra)[rep]
    owner_e = many[rep]
    g = torch.stack([u, v, z, x_lo, y_lo, nx], 1)[owner_e]  # [E, 6]
    px = g[:, 3] + k % g[:, 5].long()
    py = g[:, 4] + torch.div(k, g[:, 5].long(), rounding_mode="floor")
    du, dv = px - g[:, 0], py - g[:, 1]
    key = torch.cat([key0, g[:, 2] * (1.0 + tp * torch.sqrt(du * du + dv * dv))])
    lin = torch.cat([lin0, (py * W + px).long()])
    owner = torch.cat([torch.arange(len(z)), owner_e])
    return key, lin, owner, torch.cat([z, g[:, 2]])


def _zbuffer(key: torch.Tensor, lin: torch.Tensor, owner: torch.Tensor, zcat: torch.Tensor,
             n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel the pair with the smallest key: (winning point index [n_pixels], -1 where none;
    its depth [n_pixels], 0 where none)."""
    index = np.full(n_pixels + 1, -1, np.int64)
    depth = np.zeros(n_pixels + 1, np.float32)
    if len(key):
        zbuf = torch.full((n_pixels + 1,), float("inf")).scatter_reduce_(0, lin, key, reduce="amin")
        win = key == zbuf[lin]
        lin_w = lin[win].numpy()
        index[lin_w] = owner[win].numpy()
        depth[lin_w] = zcat[win].numpy()
    return index[:-1], depth[:-1]


def render_points_reference(xyz, rgb, size, K, w2c, width, height, splat_scale=1.0, max_radius_px=4.0,
                            tie_penalty=0.01, near=1e-3) -> PointRender:
    """Slow per-pixel z-buffer with the same splat rule; the test oracle for `render_points`."""
    xyz = np.asarray(xyz, np.float64)
    cam = xyz @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = cam[:, 0] / z * K[0, 0] + K[0, 2]
        v = cam[:, 1] / z * K[1, 1] + K[1, 2]
    f = 0.5 * (K[0, 0] + K[1, 1])
    r = np.clip(0.5 * splat_scale * np.asarray(size) * f / np.maximum(z, 1e-9), 0.5, max_radius_px)
    index = np.full((height, width), -1, np.int64)
    depth = np.zeros((height, width), np.float32)
    best = np.full((height, width), np.inf)
    for py in range(height):
        for px in range(width):
            du, dv = np.abs(px - u), np.abs(py - v)
            covered = (z > near) & (du <= r) & (dv <= r)
            if not covered.any():
                continue
            key = np.where(covered, z * (1 + tie_penalty * np.sqrt(du**2 + dv**2)), np.inf)
            i = int(np.argmin(key))
            best[py, px] = key[i]
            index[py, px] = i
            depth[py, px] = z[i]
    hole = index < 0
    out_rgb = np.zeros((height, width, 3), np.uint8)
    out_rgb[~hole] = np.asarray(rgb)[index[~hole]]
    return PointRender(out_rgb, depth, hole, index)


def fill_cracks(out: PointRender, min_neighbours: int = 5, iters: int = 2) -> PointRender:
    """Close pinholes and one-pixel cracks between splats (a surface seen obliquely), which are not
    disocclusions: a hole pixel with ≥ `min_neighbours` of its 8 neighbours covered takes the
    nearest of them (point index, colour, depth). Real holes are wider and stay holes."""
    H, W = out.index.shape
    index = np.pad(out.index, 1, constant_values=-1).ravel()  # padded, flat: neighbours by offset
    depth = np.pad(out.depth, 1).ravel()
    rgb = np.pad(out.rgb, ((1, 1), (1, 1), (0, 0))).reshape(-1, 3)
    Wp = W + 2
    offsets = np.array([dy * Wp + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
    inner = np.zeros((H + 2, Wp), bool)
    inner[1:-1, 1:-1] = True
    inner = inner.ravel()
    for _ in range(iters):
        holes = np.flatnonzero((index < 0) & inner)  # only hole pixels are looked at
        if len(holes) == 0:
            break
        nb = holes[:, None] + offsets  # [M, 8]
        nb_idx = index[nb]
        covered = nb_idx >= 0
        crack = covered.sum(1) >= min_neighbours
        if not crack.any():
            break
        nb_d = np.where(covered, depth[nb], np.inf)[crack]
        src = nb[crack][np.arange(int(crack.sum())), np.argmin(nb_d, axis=1)]
        dst = holes[crack]
        index[dst], depth[dst], rgb[dst] = index[src], depth[src], rgb[src]
    index = index.reshape(H + 2, Wp)[1:-1, 1:-1]
    return PointRender(rgb.reshape(H + 2, Wp, 3)[1:-1, 1:-1].copy(), depth.reshape(H + 2, Wp)[1:-1, 1:-1].copy(),
                       index < 0, index.copy())
