"""Hole filling from the background side: dominant planes, harmonic inverse depth, provenance confidence.

A disocclusion shows what lies behind the occluder, so every hole takes its depth and colour from
the far ("background") side of its rim, never from the occluder's silhouette:

  * planes: dominant planes (floor, walls, table tops) fitted by RANSAC to the input view's points
    are intersected with each hole pixel's ray; a hit inside the plane's (enlarged) extent that
    agrees with the background fill snaps the pixel onto the plane;
  * harmonic: elsewhere inverse depth (and colour) solve Laplace's equation with the background rim
    as boundary values; planes are linear in inverse depth over the image, so they stay flat;
  * extrapolated: pixels far from any background rim, or in holes without one, keep a guess
    (farthest-neighbour propagation) with a low confidence.

The confidence of each pixel says how it was made: observed > plane > interpolated > extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.ndimage import distance_transform_edt, label
from scipy.spatial import cKDTree
from scipy.sparse.linalg import splu

from worldstereo.cameras import Camera
from worldstereo.geometry import project_points
from worldstereo.memory.cache import violates_free_space

KIND_OBSERVED, KIND_PLANE, KIND_INTERPOLATED, KIND_EXTRAPOLATED = 0, 1, 2, 3
CONF_PLANE = 0.6
CONF_INTERPOLATED = 0.35
CONF_EXTRAPOLATED = 0.1
"""Confidence of synthesised pixels by how they were made (observed pixels keep the cache's, ≥ 1 for the input)."""


@dataclass
class Plane:
    """n·x + c = 0 in world coordinates (|n| = 1), with the axis-aligned box its inliers span."""

    normal: np.ndarray  # [3]
    offset: float
    lo: np.ndarray  # [3] world box of the inliers, enlarged
    hi: np.ndarray  # [3]
    support: int
    texture: "PlaneTexture | None" = None


@dataclass
class PlaneTexture:
    """The colours the input view saw on a plane, in 2D plane coordinates (origin, u, v), for
    carrying its texture into holes: a hit outside the observed extent is mirrored back into it."""

    origin: np.ndarray  # [3]
    u: np.ndarray  # [3] unit, in the plane
    v: np.ndarray  # [3] unit, in the plane, ⟂ u
    lo: np.ndarray  # [2] observed extent in (u, v)
    hi: np.ndarray  # [2]
    tree: cKDTree  # over the observed points' (u, v)
    rgb: np.ndarray  # [M, 3] uint8
    spacing: float
    """Median distance between neighbouring observed points: the gate for a sample to count."""


def plane_tolerance(xyz: np.ndarray, tol_rel: float = 0.01) -> float:
    """Half-width of a plane's inlier band: tol_rel × the points' median distance to the origin."""
    return tol_rel * float(np.median(np.linalg.norm(xyz, axis=1)))


def fit_planes(xyz: np.ndarray, max_planes: int = 4, min_support: float = 0.05, tol_rel: float = 0.01,
               iters: int = 300, extent_margin: float = 1.0, max_points: int = 20000, seed: int = 0,
               up: np.ndarray | None = None, level_margin: float | None = None) -> list[Plane]:
    """Sequential RANSAC: up to `max_planes` planes, each holding ≥ min_support of the points within
    tol_rel × the median distance to the origin. Deterministic (fixed seed).

    Each plane's box is its inliers' box enlarged by extent_margin × its size per side; with `up`
    (a world direction) and `level_margin`, level planes (normal within ~25° of up: floors, ground,
    ceilings, table tops) are enlarged by level_margin instead."""
    rng = np.random.default_rng(seed)
    pts = xyz.astype(np.float64)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    n_total = len(pts)
    if n_total < 3:
        return []
    tol = plane_tolerance(pts, tol_rel)
    planes: list[Plane] = []
    for _ in range(max_planes):
        if len(pts) < max(3, min_support * n_total):
            break
        tri = pts[rng.integers(0, len(pts), (iters, 3))]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(n, axis=1)
        ok = norm > 1e-12
        n, tri = n[ok] / norm[ok, None], tri[ok]
        if not len(n):
            break
        c = -np.einsum("ij,ij->i", n, tri[:, 0])
        counts = (np.abs(pts @ n.T + c) <= tol).sum(0)
        best = int(np.argmax(counts))
        inl = np.abs(pts @ n[best] + c[best]) <= tol
        if inl.sum() < min_support * n_total:
            break
        # least-squares refit on the inliers (smallest principal axis)
        q = pts[inl]
        mu = q.mean(0)
        normal = np.linalg.svd(q - mu, full_matrices=False)[2][-1]
        inl = np.abs((pts - mu) @ normal) <= tol
        q = pts[inl]
        lo, hi = q.min(0), q.max(0)
        level = up is not None and level_margin is not None and abs(float(normal @ up)) >= 0.9
        pad = (level_margin if level else extent_margin) * (hi - lo) + tol
        planes.append(Plane(normal, float(-normal @ mu), lo - pad, hi + pad, int(inl.sum())))
        pts = pts[~inl]
    return planes


def dense_planes(planes: list[Plane], xyz: np.ndarray, cam: Camera, tol_rel: float = 0.01, min_cover: float = 0.6,
                 cell_px: int = 8) -> list[Plane]:
    """The planes whose inliers cover at least `min_cover` of their image box in `cam` (cells of
    cell_px²): a wall or floor does, a plane that RANSAC threaded through scattered objects does not.

    On the 8 synthetic scenes the floors and walls cover 0.70–1.00 of their box, the planes through
    objects or distant trees 0.18–0.47 (BENCHMARKS.md, issue 12); those were right for 2–33 % of
    the hole pixels they filled."""
    if not planes or not len(xyz):
        return planes
    tol = plane_tolerance(xyz, tol_rel)
    uv, z = project_points(xyz.astype(np.float64), cam.K, cam.w2c)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    cells = (uv[inside] // cell_px).astype(np.int64)
    keep = []
    for p in planes:
        c = cells[np.abs(xyz[inside] @ p.normal + p.offset) <= tol]
        if not len(c):
            continue
        span = (c.max(0) - c.min(0) + 1).prod()
        occupied = len(np.unique(c[:, 0] * (cam.height // cell_px + 2) + c[:, 1]))
        if occupied >= min_cover * span:
            keep.append(p)
    return keep


def plane_texture(plane: Plane, xyz: np.ndarray, rgb: np.ndarray, tol: float, max_points: int = 50000,
                  seed: int = 0) -> PlaneTexture | None:
    """The texture of `plane` from coloured points (the input view's): those within tol of it."""
    on = np.abs(xyz @ plane.normal + plane.offset) <= tol
    if on.sum() < 16:
        return None
    q, c = xyz[on].astype(np.float64), rgb[on]
    if len(q) > max_points:
        pick = np.random.default_rng(seed).choice(len(q), max_points, replace=False)
        q, c = q[pick], c[pick]
    n = plane.normal
    u = np.cross(n, [0.0, 0.0, 1.0] if abs(n[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    origin = -plane.offset * n
    ab = np.stack([(q - origin) @ u, (q - origin) @ v], 1)
    tree = cKDTree(ab)
    spacing = float(np.median(tree.query(ab, k=2)[0][:, 1]))
    return PlaneTexture(origin, u, v, ab.min(0), ab.max(0), tree, c.astype(np.uint8), max(spacing, 1e-9))


def mirror_into(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """x reflected back and forth into [lo, hi] (per column): a mirror tiling, continuous at the edges."""
    span = np.maximum(hi - lo, 1e-12)
    s = np.mod(x - lo, 2 * span)
    return lo + np.where(s <= span, s, 2 * span - s)


def plane_colours(tex: PlaneTexture, hits: np.ndarray, gate: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [M, 3] uint8, found [M] bool) for points on the plane: the observed colour at the hit's
    plane coordinates mirrored into the observed extent. Past the image border or behind an
    occluder the plane continues with its own texture; where the mirrored spot was not seen either
    (farther than gate × the point spacing from any observed point), found is False."""
    ab = np.stack([(hits - tex.origin) @ tex.u, (hits - tex.origin) @ tex.v], 1)
    dist, idx = tex.tree.query(mirror_into(ab, tex.lo, tex.hi))
    return tex.rgb[idx], dist <= gate * tex.spacing


def plane_depth(cam: Camera, planes: list[Plane], pix: tuple[np.ndarray, np.ndarray],
                observed: tuple[Camera, np.ndarray] | None = None) -> np.ndarray:
    """Depth [M] where the rays of pixels (rows, cols) first meet a plane inside its extent (inf: none).

    With `observed` (the input camera and depth), a hit in space that view saw empty does not
    count: a plane extends behind occluders and past the image border, never across what was seen
    through (an enlarged box-front plane must not cover the wall visible around the box)."""
    return plane_hits(cam, planes, pix, observed)[0]


def pixel_rays(cam: Camera, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(camera centre [3], world direction per unit camera depth [M, 3]) of pixels (rows, cols):
    the point at depth t is centre + t · direction."""
    rays_cam = np.linalg.solve(cam.K, np.stack([xx + 0.0, yy + 0.0, np.ones(len(xx))]))  # z = 1
    return cam.c2w[:3, 3], (cam.c2w[:3, :3] @ rays_cam).T


def plane_hits(cam: Camera, planes: list[Plane], pix: tuple[np.ndarray, np.ndarray],
               observed: tuple[Camera, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """plane_depth and, per pixel, the index of the plane hit (-1: none)."""
    o, d = pixel_rays(cam, *pix)
    best = np.full(len(d), np.inf)
    which = np.full(len(d), -1)
    for k, p in enumerate(planes):
        denom = d @ p.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -(o @ p.normal + p.offset) / denom
            hit = o + t[:, None] * d
        inside = np.all((hit >= p.lo) & (hit <= p.hi), axis=1) & (t > 0) & np.isfinite(t)
        if observed is not None and inside.any():
            inside[inside] = ~violates_free_space(hit[inside], *observed)
        closer = inside & (t < best)
        best, which = np.where(closer, t, best), np.where(closer, k, which)
    return best, which


def background_rim(depth_m: np.ndarray, hole: np.ndarray, window: int, rel: float = 0.15) -> np.ndarray:
    """[H, W] bool: valid pixels next to a hole that lie on its far side (no rim pixel within
    `window` is more than `rel` farther): these give the hole its boundary values."""
    valid = ~hole & (depth_m > 0) & np.isfinite(depth_m)
    k = np.ones((3, 3), np.uint8)
    rim = valid & (cv2.dilate(hole.astype(np.uint8), k) > 0)
    rim_depth = np.where(rim, depth_m, 0.0).astype(np.float32)
    local_far = cv2.dilate(rim_depth, np.ones((window, window), np.uint8))
    return rim & (depth_m >= (1.0 - rel) * local_far)


def harmonic_fill(values: np.ndarray, hole: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve the discrete Laplace equation on hole pixels with Dirichlet values at `known` pixels.

    values [H, W, C]; neighbours that are neither hole nor known (occluder rims, the image border)
    are left out (zero normal derivative). Hole components touching no known pixel are not solved.
    Returns (filled [H, W, C], solved [H, W] bool). A function linear in (u, v) is reproduced
    exactly in a hole enclosed by known pixels.
    """
    H, W = hole.shape
    comp, n = label(hole)
    touch = np.zeros(n + 1, bool)
    kn = np.zeros_like(hole)
    kn[:-1] |= known[1:]
    kn[1:] |= known[:-1]
    kn[:, :-1] |= known[:, 1:]
    kn[:, 1:] |= known[:, :-1]
    touch[np.unique(comp[hole & kn])] = True
    touch[0] = False
    solve = touch[comp] & hole
    out = values.astype(np.float64).copy()
    m = int(solve.sum())
    if m == 0:
        return out, solve
    idx = -np.ones((H, W), np.int64)
    idx[solve] = np.arange(m)
    yy, xx = np.nonzero(solve)
    diag = np.zeros(m)
    rhs = np.zeros((m, values.shape[2]))
    rows, cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = yy + dy, xx + dx
        inb = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        ny_c, nx_c = np.clip(ny, 0, H - 1), np.clip(nx, 0, W - 1)
        nb_unknown = inb & solve[ny_c, nx_c]
        nb_known = inb & known[ny_c, nx_c] & ~hole[ny_c, nx_c]
        diag += nb_unknown | nb_known
        rows.append(np.nonzero(nb_unknown)[0])
        cols.append(idx[ny_c, nx_c][nb_unknown])
        rhs[nb_known] += values[ny_c[nb_known], nx_c[nb_known]]
    r = np.concatenate(rows)
    A = sp.csc_matrix((np.concatenate([diag, -np.ones(len(r))]),
                       (np.concatenate([np.arange(m), r]), np.concatenate([np.arange(m), np.concatenate(cols)]))),
                      shape=(m, m))
    sol = splu(A).solve(rhs)
    out[yy, xx] = sol
    return out, solve


def farthest_propagation(depth_m: np.ndarray, hole: np.ndarray, fallback: float, max_iters: int = 512) -> np.ndarray:
    """Fill holes by repeatedly taking the farthest valid depth in a 3×3 neighbourhood (the guess
    of last resort: it extends the background but is constant across the hole)."""
    d = np.where(hole, 0.0, depth_m).astype(np.float32)
    todo = hole.copy()
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(max_iters):
        if not todo.any():
            break
        grown = cv2.dilate(d, kernel)
        newly = todo & (grown > 0)
        if not newly.any():
            break
        d[newly] = grown[newly]
        todo &= ~newly
    d[todo] = fallback
    return d


@dataclass
class HoleFill:
    depth: np.ndarray  # [H, W] float32
    rgb: np.ndarray  # [H, W, 3] uint8
    kind: np.ndarray  # [H, W] uint8: KIND_* per pixel (observed outside the hole)


def fill_holes(rgb: np.ndarray, depth_m: np.ndarray, hole: np.ndarray, cam: Camera, planes: list[Plane],
               fallback_depth: float, observed: tuple[Camera, np.ndarray] | None = None, plane_agree: float = 0.5, interp_reach: float = 0.08,
               inpaint_radius: int = 3) -> HoleFill:
    """Depth, colour and provenance for the hole pixels of one rendered view (see the module docstring).

    observed: the input camera and depth; plane hits in space it saw empty are refused.
    plane_agree: a plane hit replaces the harmonic depth unless it lies more than this fraction in front of it.
    interp_reach: harmonic pixels farther than this × the image's long side from the background rim
    count as extrapolated."""
    H, W = hole.shape
    kind = np.full((H, W), KIND_OBSERVED, np.uint8)
    if not hole.any():
        return HoleFill(depth_m.astype(np.float32), rgb.copy(), kind)
    window = max(31, (max(H, W) // 6) | 1)  # wide enough to see across a disocclusion to its far rim
    rim = background_rim(depth_m, hole, window)
    values = np.concatenate([np.where(rim, 1.0 / np.maximum(depth_m, 1e-9), 0.0)[..., None],
                             rgb.astype(np.float64)], axis=2)
    filled, solved = harmonic_fill(values, hole, rim)
    depth = depth_m.astype(np.float64).copy()
    out_rgb = rgb.copy()
    with np.errstate(divide="ignore"):
        harm_depth = 1.0 / filled[..., 0]
    depth[solved] = harm_depth[solved]
    out_rgb[solved] = np.clip(np.round(filled[..., 1:][solved]), 0, 255).astype(np.uint8)
    far = distance_transform_edt(~rim) > interp_reach * max(H, W)
    kind[solved] = np.where(far[solved], KIND_EXTRAPOLATED, KIND_INTERPOLATED)
    rest = hole & ~solved
    if rest.any():
        depth[rest] = farthest_propagation(depth_m, rest, fallback_depth)[rest]
        # colour from the background rim only: the occluder's side is masked out of the inpainting
        src = out_rgb.copy()
        mask = (rest | (~hole & ~rim & (cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)))
        out_rgb[rest] = cv2.inpaint(src, mask.astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)[rest]
        kind[rest] = KIND_EXTRAPOLATED
    if planes:
        pix = np.nonzero(hole)
        t, which = plane_hits(cam, planes, pix, observed)
        cur = depth[pix]
        # a plane may lie behind the background fill (the hole reveals what is behind), not in front of it
        agree = np.isfinite(t) & ((t >= (1.0 - plane_agree) * cur) | (kind[pix] == KIND_EXTRAPOLATED))
        yy, xx = pix[0][agree], pix[1][agree]
        depth[yy, xx] = t[agree]
        kind[yy, xx] = KIND_PLANE
        _texture_plane_hits(out_rgb, cam, planes, yy, xx, t[agree], which[agree])
    return HoleFill(depth.astype(np.float32), out_rgb, kind)


def _texture_plane_hits(rgb: np.ndarray, cam: Camera, planes: list[Plane], yy: np.ndarray, xx: np.ndarray,
                        t: np.ndarray, which: np.ndarray) -> None:
    """Colour plane-hit pixels (in place) with their plane's own texture (plane_colours) where it
    has one; elsewhere the background-rim colour stays."""
    if not len(yy):
        return
    o, d = pixel_rays(cam, yy, xx)
    hits = o + t[:, None] * d
    for k, p in enumerate(planes):
        on = which == k
        if p.texture is None or not on.any():
            continue
        colour, found = plane_colours(p.texture, hits[on])
        sel = np.flatnonzero(on)[found]
        rgb[yy[sel], xx[sel]] = colour[found]


def flying_pixels(depth_m: np.ndarray, rel: float) -> np.ndarray:
    """[H, W] bool: pixels at a depth step, where the inverse depth's second difference along a row or
    column exceeds `rel` × its value. Both sides of a step are marked; a plane seen at a grazing
    angle is not (its inverse depth is linear over the image), unlike a first-difference test,
    which would cut the far ground near the horizon. Pixels or neighbours without depth do not count."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(np.isfinite(depth_m) & (depth_m > 0), 1.0 / depth_m.astype(np.float64), np.nan)
        out = np.zeros(depth_m.shape, bool)
        lap_v = np.abs(inv[:-2] - 2 * inv[1:-1] + inv[2:]) > rel * inv[1:-1]  # NaN compares False
        lap_h = np.abs(inv[:, :-2] - 2 * inv[:, 1:-1] + inv[:, 2:]) > rel * inv[:, 1:-1]
    out[1:-1] |= lap_v
    out[:, 1:-1] |= lap_h
    return out


def confidence_of(kind: np.ndarray, observed_conf: np.ndarray) -> np.ndarray:
    """[H, W] float32 confidence from provenance; observed pixels take `observed_conf`."""
    table = np.array([0.0, CONF_PLANE, CONF_INTERPOLATED, CONF_EXTRAPOLATED], np.float32)
    return np.where(kind == KIND_OBSERVED, observed_conf, table[kind]).astype(np.float32)
