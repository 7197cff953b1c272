"""Plane-sweep multi-view stereo for known cameras: per-frame depth and confidence (numpy + OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from worldstereo.geometry import invert_rigid, pixel_grid, project_points, unproject_depth


@dataclass
class MVSConfig:
    """Plane sweep, cost, filtering and depth range of `mvs_depth` / `mvs_sequence`."""

    planes: int = 48
    """Fronto-parallel depth planes, uniform in inverse depth between near and far."""
    neighbours: int = 3
    """Source frames per reference frame: the nearest in index (i−1, i+1, i−2, …)."""
    best_k: int = 2
    """Cost of a plane = mean of the k lowest neighbour costs (robust to occlusion in the others)."""
    window: int = 5
    """Side of the square ZNCC window in pixels (odd)."""
    near: float | None = None
    """Nearest plane depth; None: from points tracked (LK) and triangulated with the known cameras."""
    far: float | None = None
    """Farthest plane depth; None: as for near."""
    range_margin: float = 1.5
    """Triangulated depth range (5th–95th percentile) widened by this factor on each side."""
    min_texture: float = 2.0
    """Grey-level standard deviation (0–255) in the window below which a pixel is textureless."""
    max_cost: float = 0.5
    """Pixels whose best cost (1 − ZNCC) is above this get depth 0."""
    min_conf: float = 0.25
    """Pixels whose confidence (1 − best / second-best cost) is below this get depth 0."""
    peak_radius: int = 2
    """Planes either side of the best one that the second-best cost ignores."""
    consistency: float = 0.02
    """Sequences: keep a pixel only if a neighbour's depth agrees within this relative depth (0 = off)."""
    max_side: int = 512
    """Outside videos: frames with a longer side are downscaled to this before the sweep."""


# --------------------------------------------------------------------------- geometry of the sweep


def plane_depths(near: float, far: float, planes: int) -> np.ndarray:
    """Plane depths [D], uniform in inverse depth from near to far."""
    return 1.0 / np.linspace(1.0 / near, 1.0 / far, planes)


def plane_homographies(K_ref: np.ndarray, c2w_ref: np.ndarray, K_src: np.ndarray, c2w_src: np.ndarray,
                       depths: np.ndarray) -> np.ndarray:
    """Homographies [D, 3, 3] taking reference pixels (u, v, 1) to source pixels through the planes
    z_ref = depths[d]: K_src (R + t nᵀ / d) K_ref⁻¹ with [R t] = w2c_src · c2w_ref, n = (0, 0, 1)."""
    T = invert_rigid(c2w_src) @ c2w_ref
    tn = np.outer(T[:3, 3], [0.0, 0.0, 1.0])
    M = T[:3, :3][None] + tn[None] / np.asarray(depths, np.float64)[:, None, None]
    return K_src[None] @ M @ np.linalg.inv(K_ref)[None]


def warp_source(src: np.ndarray, homs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source grey image [H, W] warped into the reference for each plane: [H, W, D] float32 and a
    valid mask [H, W, D] (the plane point lies in front of the source camera and inside its image)."""
    H, W = src.shape
    u, v = pixel_grid(H, W)
    x = np.einsum("dij,jn->din", homs, np.stack([u.ravel(), v.ravel(), np.ones(H * W)]))  # [D, 3, HW]
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = (x[:, 0] / x[:, 2]).astype(np.float32).reshape(-1, H, W)
        my = (x[:, 1] / x[:, 2]).astype(np.float32).reshape(-1, H, W)
    valid = (x[:, 2].reshape(-1, H, W) > 0) & (mx >= -0.5) & (mx <= W - 0.5) & (my >= -0.5) & (my <= H - 0.5)
    mx[~valid], my[~valid] = -1.0, -1.0
    out = np.stack([cv2.remap(src, a, b, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    for a, b in zip(mx, my)], axis=-1)
    return out, np.moveaxis(valid, 0, -1)


# --------------------------------------------------------------------------- matching cost


def _box(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over a window×window box of [H, W] or [H, W, C] float32 (OpenCV takes ≤ 512 channels)."""
    if x.ndim == 2 or x.shape[2] <= 512:
        return cv2.boxFilter(x, -1, (window, window), borderType=cv2.BORDER_REFLECT)
    return np.concatenate([_box(x[..., c:c + 512], window) for c in range(0, x.shape[2], 512)], axis=2)


def grey(image: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] (or grey [H, W]) → grey float32 [H, W] in 0..1."""
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return g.astype(np.float32) / 255.0


def zncc_cost(ref: np.ndarray, warped: np.ndarray, window: int, min_std: float) -> np.ndarray:
    """1 − ZNCC [H, W, D] in 0..2 between the reference [H, W] and warped sources [H, W, D] over
    window×window boxes; 1 (no evidence) where the warped window's std is below min_std."""
    mr = _box(ref, window)[..., None]
    vr = np.maximum(_box(ref * ref, window)[..., None] - mr * mr, 0.0)
    mw = _box(warped, window)
    vw = np.maximum(_box(warped * warped, window) - mw * mw, 0.0)
    cov = _box(warped * ref[..., None], window) - mw * mr
    zncc = cov / np.sqrt(np.maximum(vr * vw, 1e-12))
    return np.where(vw < min_std**2, 1.0, 1.0 - np.clip(zncc, -1.0, 1.0)).astype(np.float32)


def aggregate(costs: np.ndarray, best_k: int) -> np.ndarray:
    """Per-plane cost [H, W, D] = mean of the best_k lowest of the neighbour costs [N, H, W, D]."""
    k = int(np.clip(best_k, 1, len(costs)))
    if k == len(costs):
        return costs.mean(axis=0)
    return np.partition(costs, k - 1, axis=0)[:k].mean(axis=0)


# --------------------------------------------------------------------------- winner take all


def winner_take_all(cost: np.ndarray, depths: np.ndarray, peak_radius: int) -> tuple[np.ndarray, ...]:
    """Best plane with sub-plane parabolic refinement in inverse depth.

    cost [H, W, D], depths [D] (uniform in 1/depth). Returns depth [H, W], best cost [H, W],
    confidence [H, W] = 1 − best / second best (planes within peak_radius of the best ignored),
    and the best plane index [H, W]."""
    D = cost.shape[2]
    idx = np.argmin(cost, axis=2)
    take = lambda i: np.take_along_axis(cost, np.clip(i, 0, D - 1)[..., None], axis=2)[..., 0]  # noqa: E731
    c0, cm, cp = take(idx), take(idx - 1), take(idx + 1)
    curv = cm - 2.0 * c0 + cp
    inner = (idx > 0) & (idx < D - 1) & (curv > 1e-9)
    offset = np.where(inner, 0.5 * (cm - cp) / np.where(inner, curv, 1.0), 0.0).clip(-0.5, 0.5)
    inv = 1.0 / np.asarray(depths, np.float64)
    step = (inv[-1] - inv[0]) / max(D - 1, 1)
    depth = 1.0 / (inv[idx] + offset * step)
    far = np.abs(np.arange(D)[None, None] - idx[..., None]) > peak_radius
    second = np.where(far, cost, np.inf).min(axis=2)
    conf = np.clip(1.0 - c0 / np.maximum(second, 1e-6), 0.0, 1.0)
    return depth.astype(np.float32), c0, conf.astype(np.float32), idx


# --------------------------------------------------------------------------- depth range


def triangulated_range(ref: np.ndarray, K_ref: np.ndarray, c2w_ref: np.ndarray, srcs: list[np.ndarray],
                       K_src: np.ndarray, c2w_src: np.ndarray) -> tuple[float, float] | None:
    """5th and 95th percentile of reference-camera depth [m] of corners tracked (pyramidal LK with a
    forward–backward check) into each source uint8 grey image and triangulated with the known cameras;
    None when fewer than 8 points survive (no baseline, no texture)."""
    pts = cv2.goodFeaturesToTrack(ref, maxCorners=400, qualityLevel=0.01, minDistance=4)
    if pts is None:
        return None
    P_ref = K_ref @ np.eye(4)[:3]
    zs = []
    for src, K, c2w in zip(srcs, K_src, c2w_src):
        T = invert_rigid(c2w) @ c2w_ref
        if np.linalg.norm(T[:3, 3]) < 1e-9:
            continue
        fwd, st, _ = cv2.calcOpticalFlowPyrLK(ref, src, pts, None, winSize=(15, 15), maxLevel=3)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(src, ref, fwd, None, winSize=(15, 15), maxLevel=3)
        ok = (st[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back - pts, axis=2)[:, 0] < 0.5)
        if ok.sum() < 4:
            continue
        a, b = pts[ok, 0].T.astype(np.float64), fwd[ok, 0].T.astype(np.float64)
        X = cv2.triangulatePoints(P_ref, K @ T[:3], a, b)
        X = X[:3] / X[3]
        uv, z_src = project_points(X.T, K, T)
        good = (X[2] > 0) & (z_src > 0) & (np.linalg.norm(uv - b.T, axis=1) < 1.0)
        zs.append(X[2, good])
    z = np.concatenate(zs) if zs else np.zeros(0)
    if len(z) < 8:
        return None
    return float(np.percentile(z, 5)), float(np.percentile(z, 95))


def neighbour_indices(i: int, n_frames: int, count: int) -> list[int]:
    """The `count` frames nearest to i in index (i−1, i+1, i−2, i+2, …), within 0..n_frames−1."""
    out = []
    for step in range(1, n_frames):
        out += [j for j in (i - step, i + step) if 0 <= j < n_frames]
        if len(out) >= count:
            break
    return out[:count]


# --------------------------------------------------------------------------- one frame, a sequence


def mvs_depth(ref: np.ndarray, K_ref: np.ndarray, c2w_ref: np.ndarray, srcs: list[np.ndarray],
              K_src: np.ndarray, c2w_src: np.ndarray, cfg: MVSConfig = MVSConfig(),
              near: float | None = None, far: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Depth [H, W] float32 (0 = unreliable) and confidence [H, W] float32 in 0..1 of the reference
    RGB uint8 image [H, W, 3] from source images (list of [H, W, 3]) with K [N, 3, 3], c2w [N, 4, 4].

    near / far (else cfg.near / cfg.far, else triangulated) bound the sweep; with no range at all
    every pixel is unreliable."""
    g_ref = grey(ref)
    g_src = [grey(s) for s in srcs]
    near = cfg.near if near is None else near
    far = cfg.far if far is None else far
    if near is None or far is None:
        rng = triangulated_range((g_ref * 255).astype(np.uint8), K_ref, c2w_ref,
                                 [(g * 255).astype(np.uint8) for g in g_src], K_src, c2w_src)
        if rng is None:
            return np.zeros(g_ref.shape, np.float32), np.zeros(g_ref.shape, np.float32)
        near = rng[0] / cfg.range_margin if near is None else near
        far = rng[1] * cfg.range_margin if far is None else far
    depths = plane_depths(near, max(far, near * 1.01), cfg.planes)
    costs = []
    for g, K, c2w in zip(g_src, K_src, c2w_src):
        warped, valid = warp_source(g, plane_homographies(K_ref, c2w_ref, K, c2w, depths))
        costs.append(np.where(valid, zncc_cost(g_ref, warped, cfg.window, cfg.min_texture / 255.0), 1.0))
    cost = aggregate(np.stack(costs), cfg.best_k)
    depth, best, conf, idx = winner_take_all(cost, depths, cfg.peak_radius)
    m = _box(g_ref, cfg.window)
    textured = np.sqrt(np.maximum(_box(g_ref * g_ref, cfg.window) - m * m, 0.0)) >= cfg.min_texture / 255.0
    conf = np.where(textured, conf, 0.0).astype(np.float32)
    ok = textured & (conf >= cfg.min_conf) & (best <= cfg.max_cost) & (idx > 0) & (idx < cfg.planes - 1)
    return np.where(ok, depth, 0.0).astype(np.float32), conf


def agreement_count(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, i: int, others: list[int],
                    rel_tol: float) -> np.ndarray:
    """[H, W] int: 1 (frame i itself) + the number of frames in `others` whose depth map (of depth
    [N, H, W], 0 = none), at the nearest pixel to frame i's reprojected point, agrees within rel_tol
    relative depth; 0 where frame i has no depth."""
    H, W = depth.shape[1:]
    pts = unproject_depth(depth[i], K[i], c2w[i]).reshape(-1, 3)
    has = np.isfinite(pts[:, 2])
    count = np.where(has, 1, 0)
    for j in others:
        uv, z = project_points(pts[has], K[j], invert_rigid(c2w[j]))
        u = np.rint(np.nan_to_num(uv[:, 0], nan=-1.0)).astype(np.int64)
        v = np.rint(np.nan_to_num(uv[:, 1], nan=-1.0)).astype(np.int64)
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0)
        dj = np.zeros(len(z))
        dj[inside] = depth[j][v[inside], u[inside]]
        count[np.flatnonzero(has)] += ((dj > 0) & (np.abs(dj - z) <= rel_tol * z)).astype(int)
    return count.reshape(H, W)


def consistent(depths: np.ndarray, K: np.ndarray, c2w: np.ndarray, i: int, others: list[int],
               rel_tol: float) -> np.ndarray:
    """[H, W] bool: frame i's depth reprojected into at least one frame of `others` agrees with it."""
    return agreement_count(depths, K, c2w, i, others, rel_tol) >= 2


def mvs_sequence(images: np.ndarray, K: np.ndarray, c2w: np.ndarray,
                 cfg: MVSConfig = MVSConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Depth and confidence [N, H, W] float32 of every frame of images [N, H, W, 3] uint8 with
    K [N, 3, 3], c2w [N, 4, 4]: each frame swept against its index neighbours, then (cfg.consistency)
    kept only where a neighbour's depth map agrees. Frames with no triangulated range use the
    median range of the others."""
    n = len(images)
    nbrs = [neighbour_indices(i, n, cfg.neighbours) for i in range(n)]
    ranges = [None] * n
    if cfg.near is None or cfg.far is None:
        greys = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]
        ranges = [triangulated_range(greys[i], K[i], c2w[i], [greys[j] for j in nbrs[i]], K[nbrs[i]], c2w[nbrs[i]])
                  for i in range(n)]
        found = np.array([r for r in ranges if r is not None]).reshape(-1, 2)
        if len(found):
            fallback = (float(np.median(found[:, 0])), float(np.median(found[:, 1])))
            ranges = [r if r is not None else fallback for r in ranges]
    depth = np.zeros(images.shape[:3], np.float32)
    conf = np.zeros(images.shape[:3], np.float32)
    for i in range(n):
        if not nbrs[i] or (ranges[i] is None and (cfg.near is None or cfg.far is None)):
            continue
        near = cfg.near if cfg.near is not None else ranges[i][0] / cfg.range_margin
        far = cfg.far if cfg.far is not None else ranges[i][1] * cfg.range_margin
        depth[i], conf[i] = mvs_depth(images[i], K[i], c2w[i], [images[j] for j in nbrs[i]], K[nbrs[i]],
                                      c2w[nbrs[i]], cfg, near, far)
    if cfg.consistency > 0 and n > 1:
        keep = np.stack([consistent(depth, K, c2w, i, nbrs[i], cfg.consistency) for i in range(n)])
        depth = np.where(keep, depth, 0.0).astype(np.float32)
        conf = np.where(keep, conf, 0.0).astype(np.float32)
    return depth, conf
