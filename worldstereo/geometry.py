"""Geometry: project / unproject, depth discontinuities, Umeyama Sim(3), frustum overlap, voxel merge.

Conventions (DESIGN.md): OpenCV camera axes (x right, y down, z forward), pixel centres at
integer coordinates, K in pixels, `c2w` / `w2c` 4×4 rigid matrices. Arrays are numpy float64
unless a function says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# --------------------------------------------------------------------------- projection


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel centres `(u, v)`, each [H, W] float64."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return u, v


def unproject_depth(depth_m: np.ndarray, K: np.ndarray, c2w: np.ndarray | None = None) -> np.ndarray:
    """Depth map [H, W] (z along the optical axis) → points [H, W, 3] in world (or camera) frame.

    X_cam = z · K⁻¹ [u, v, 1]ᵀ ;  X_world = R X_cam + t  with c2w = [R t].
    Invalid depth (≤ 0, inf, NaN) gives NaN points.
    """
    H, W = depth_m.shape
    u, v = pixel_grid(H, W)
    z = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    pts = np.stack([x, y, z], axis=-1)
    if c2w is not None:
        pts = pts @ c2w[:3, :3].T + c2w[:3, 3]
    return pts


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4×4 (or 3×4) transform to points [..., 3]."""
    # einsum: numpy's matmul with an inner dimension of 3 is ~2× slower on large N
    return np.einsum("ij,...j->...i", T[:3, :3], pts) + T[:3, 3]


def project_points(pts_world: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] → pixel coordinates [N, 2] and camera depth z [N]."""
    cam = transform_points(w2c, pts_world)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z[:, None]) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    return uv, z


def skew(v: np.ndarray) -> np.ndarray:
    """[v]× [3, 3]: skew(v) @ w == np.cross(v, w)."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4×4 rigid transform (c2w ↔ w2c) without a general matrix inverse."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def as_4x4(T: np.ndarray) -> np.ndarray:
    """[..., 3, 4] or [..., 4, 4] transform(s) → [..., 4, 4] float64 with bottom row [0 0 0 1]."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] == (4, 4):
        return T.copy()
    if T.shape[-2:] != (3, 4):
        raise ValueError(f"expected [..., 3, 4] or [..., 4, 4] transforms, got shape {T.shape}")
    out = np.broadcast_to(np.eye(4), T.shape[:-2] + (4, 4)).copy()
    out[..., :3, :] = T
    return out


def w2c_to_c2w(w2c: np.ndarray) -> np.ndarray:
    """World-to-camera [..., 3, 4] or [..., 4, 4] (results.npz stores 3×4) → camera-to-world [..., 4, 4].

    A general inverse, not `invert_rigid`: stored w2c are float32, orthonormal only to ~1e-7, and
    this is the exact inverse of what is stored (what every reader of results.npz has always used).
    """
    return np.linalg.inv(as_4x4(w2c))


def c2w_to_w2c(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world [..., 3|4, 4] → world-to-camera [..., 3, 4], the results.npz layout (general
    inverse, as `w2c_to_c2w`)."""
    return np.linalg.inv(as_4x4(c2w))[..., :3, :]


def is_rigid(T: np.ndarray, atol: float = 1e-4) -> bool:
    """True when T is 4×4 with an orthonormal, right-handed rotation and bottom row [0 0 0 1]."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return (
        np.allclose(R @ R.T, np.eye(3), atol=atol)
        and abs(np.linalg.det(R) - 1.0) < atol
        and np.allclose(T[3], [0, 0, 0, 1], atol=atol)
    )


def depth_discontinuities(depth_m: np.ndarray, rel_thresh: float) -> np.ndarray:
    """[H, W] bool, True at a depth discontinuity: a valid pixel whose depth differs from a valid
    4-neighbour's by more than rel_thresh × the nearer of the two depths (both sides are marked).

    Points on both sides of such a jump would become "flying pixels" smeared between foreground
    and background. Neighbours without depth (≤ 0, inf, NaN) do not count: unknown is not a
    discontinuity. Invalid pixels are False.
    """
    d = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float64)
    edge = np.zeros(d.shape, bool)
    with np.errstate(invalid="ignore"):
        jump_v = np.abs(d[1:] - d[:-1]) > rel_thresh * np.fmin(d[1:], d[:-1])  # NaN compares False
        jump_h = np.abs(d[:, 1:] - d[:, :-1]) > rel_thresh * np.fmin(d[:, 1:], d[:, :-1])
    edge[1:] |= jump_v
    edge[:-1] |= jump_v
    edge[:, 1:] |= jump_h
    edge[:, :-1] |= jump_h
    return edge


# --------------------------------------------------------------------------- Sim(3)


@dataclass
class Sim3:
    """x' = s · R x + t."""

    s: float
    R: np.ndarray  # [3, 3]
    t: np.ndarray  # [3]

    def apply(self, pts: np.ndarray) -> np.ndarray:
        return np.einsum("ij,...j->...i", self.s * self.R, pts) + self.t

    def matrix(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = self.s * self.R
        T[:3, 3] = self.t
        return T

    @staticmethod
    def identity() -> "Sim3":
        return Sim3(1.0, np.eye(3), np.zeros(3))


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True) -> Sim3:
    """Least-squares similarity dst ≈ s R src + t (Umeyama 1991), optionally weighted.

    src, dst: [N, 3] corresponding points, N ≥ 3 and not collinear.

    >>> T = umeyama(p, 2.0 * p + 1.0)   # T.s == 2, T.R == I, T.t == [1, 1, 1]
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    xs = src - mu_s
    xd = dst - mu_d
    cov = (xd * w[:, None]).T @ xs  # Σ w_i (d_i - μd)(s_i - μs)ᵀ
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_s = float(w @ np.sum(xs**2, axis=1))
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return Sim3(s, R, t)


@dataclass
class RobustFit:
    """Result of `robust_umeyama`: the transform, which pairs were inliers, residuals in dst units."""

    transform: Sim3
    inliers: np.ndarray  # [N] bool
    rmse_before: float
    rmse_after: float  # over inliers
    median_after: float


def robust_umeyama(
    src: np.ndarray,
    dst: np.ndarray,
    iters: int = 64,
    sample: int = 4,
    inlier_thresh: float | None = None,
    seed: int = 0,
    with_scale: bool = True,
) -> RobustFit:
    """Sim(3) robust to outliers: RANSAC on minimal samples, then a weighted (Huber) refit on inliers.

    inlier_thresh defaults to 3 × the MAD-scaled residual of the best hypothesis, so the same call
    works for metric and relative scenes.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = len(src)
    if n < 3:
        raise ValueError("robust_umeyama needs at least 3 correspondences")
    rng = np.random.default_rng(seed)
    best_T, best_score = umeyama(src, dst, with_scale=with_scale), np.inf
    # hypotheses are ranked on a fixed subset: the median of 1000 residuals is as telling as of all
    probe = rng.choice(n, size=min(n, 1000), replace=False)
    for _ in range(iters):
        idx = rng.choice(n, size=min(sample, n), replace=False)
        try:
            T = umeyama(src[idx], dst[idx], with_scale=with_scale)
        except np.linalg.LinAlgError:
            continue
        if not np.isfinite(T.s) or T.s <= 0:
            continue
        r = np.linalg.norm(T.apply(src[probe]) - dst[probe], axis=1)
        score = np.median(r)  # least median of squares
        if score < best_score:
            best_T, best_score = T, score
    T = best_T
    for _ in range(5):  # iteratively reweighted refinement on the inlier set
        r = np.linalg.norm(T.apply(src) - dst, axis=1)
        sigma = 1.4826 * np.median(r) + 1e-12
        thresh = inlier_thresh if inlier_thresh is not None else max(3.0 * sigma, 1e-9)
        inl = r < thresh
        if inl.sum() < 3:
            break
        huber = np.where(r[inl] < sigma, 1.0, sigma / np.maximum(r[inl], 1e-12))
        T = umeyama(src[inl], dst[inl], weights=huber, with_scale=with_scale)
    r_after = np.linalg.norm(T.apply(src) - dst, axis=1)
    sigma = 1.4826 * np.median(r_after) + 1e-12
    inl = r_after < (inlier_thresh if inlier_thresh is not None else max(3.0 * sigma, 1e-9))
    return RobustFit(
        transform=T,
        inliers=inl,
        rmse_before=float(np.sqrt(np.mean(np.sum((src - dst) ** 2, axis=1)))),
        rmse_after=float(np.sqrt(np.mean(r_after[inl] ** 2))) if inl.any() else float("nan"),
        median_after=float(np.median(r_after)),
    )


# --------------------------------------------------------------------------- frusta


def frustum_samples(n: int = 2048, seed: int = 0) -> np.ndarray:
    """Fixed quasi-random samples [n, 3] in the unit cube (a, b, c), shared by all frustum volumes.

    A sample maps into a frustum as (u, v) = (a·W, b·H) pixels and z = near..far with density ∝ z²,
    so the samples are uniform in the frustum's volume.
    """
    rng = np.random.default_rng(seed)
    return rng.random((n, 3))


def frustum_points(K: np.ndarray, c2w: np.ndarray, width: int, height: int, near: float, far: float,
                   unit: np.ndarray) -> np.ndarray:
    """Volume-uniform points [n, 3] (world) inside a camera's frustum between near and far."""
    u = unit[:, 0] * width - 0.5
    v = unit[:, 1] * height - 0.5
    # inverse CDF of p(z) ∝ z² on [near, far]
    z = np.cbrt(near**3 + unit[:, 2] * (far**3 - near**3))
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=1)
    return transform_points(c2w, cam)


def inside_frustum(pts: np.ndarray, K: np.ndarray, w2c: np.ndarray, width: int, height: int,
                   near: float, far: float) -> np.ndarray:
    """[N] bool: which world points lie inside the frustum."""
    uv, z = project_points(pts, K, w2c)
    return (
        (z >= near) & (z <= far)
        & (uv[:, 0] >= -0.5) & (uv[:, 0] <= width - 0.5)
        & (uv[:, 1] >= -0.5) & (uv[:, 1] <= height - 0.5)
    )


def frustum_overlap(cam_a, cam_b, near: float, far: float, unit: np.ndarray | None = None) -> float:
    """Fraction of camera a's frustum volume that lies inside camera b's frustum (0..1).

    Monte-Carlo over fixed volume-uniform samples, so the value is deterministic and identical
    cameras give exactly 1. `cam_*` need `.K`, `.c2w`, `.width`, `.height` (cameras.Camera).
    """
    unit = frustum_samples() if unit is None else unit
    pts = frustum_points(cam_a.K, cam_a.c2w, cam_a.width, cam_a.height, near, far, unit)
    inside = inside_frustum(pts, cam_b.K, invert_rigid(cam_b.c2w), cam_b.width, cam_b.height, near, far)
    return float(inside.mean())


def viewing_angle_deg(c2w_a: np.ndarray, c2w_b: np.ndarray) -> float:
    """Angle between the two optical axes, degrees."""
    za, zb = c2w_a[:3, 2], c2w_b[:3, 2]
    c = np.clip(za @ zb / (np.linalg.norm(za) * np.linalg.norm(zb)), -1.0, 1.0)
    return float(np.degrees(np.arccos(c)))


# --------------------------------------------------------------------------- voxels


def voxel_keys(pts: np.ndarray, voxel: float) -> np.ndarray:
    """Integer voxel index [N] (int64) of each point, hashed from its 3 cell coordinates."""
    cell = np.floor(pts / voxel).astype(np.int64)
    # 21 bits per axis, offset so negatives fit: exact for |cell| < 2^20
    off = 1 << 20
    return ((cell[:, 0] + off) << 42) | ((cell[:, 1] + off) << 21) | (cell[:, 2] + off)


def voxel_downsample(pts: np.ndarray, voxel: float, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean point per occupied voxel. Returns (points [M, 3], index of voxel per input [N])."""
    keys = voxel_keys(pts, voxel)
    uniq, inv = np.unique(keys, return_inverse=True)
    w = np.ones(len(pts)) if weights is None else weights
    wsum = np.bincount(inv, weights=w, minlength=len(uniq))
    out = np.stack([np.bincount(inv, weights=w * pts[:, k], minlength=len(uniq)) for k in range(3)], axis=1)
    return out / np.maximum(wsum, 1e-12)[:, None], inv
