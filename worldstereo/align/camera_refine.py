"""Refined cameras: each aligned frame's pose re-solved from its pixels' bearings (robust PnP).

Every depth error of a generated frame (scale drift, smooth warps, shifts, bumps) moves a point
along its pixel's ray, never across it. Once a frame is aligned, its point x_p (pixel p) sits at
X_p = A (x_p + δ(x_p)) on the canonical surface, so the true camera is the one that sees X_p at
pixel p, whatever depth x_p had. That camera is found here by minimising the reprojection error

    E(w2c) = Σ_p ρ(‖π(K, w2c · X_p) − p‖)

(Gauss–Newton, Huber then Tukey ρ at the MAD scale of the pixel residuals), started from the rigid part
of the Sim(3) that maps x_p to X_p. The deformation stays fixed: only the rotation and the centre
are re-solved. The rigid Sim(3) alone is biased wherever the warp is not a pure scale: it trades
rotation for warp (~1° under the harder benchmark's warps with a perfect placement,
tests/test_align_refine.py); bearings do not. The camera is only as good as the placement: a frame
that the alignment slid along the surfaces keeps that slide (BENCHMARKS.md, issue 15).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from worldstereo.geometry import umeyama

CameraRefine = Literal["bearing", "rigid"]


def rigid_c2w(x_cam: np.ndarray, X_world: np.ndarray) -> np.ndarray:
    """Rotation and translation of the Sim(3) best mapping camera points x to world points X (the
    scale, a depth scale error, is left out) as a c2w [4, 4]."""
    sim = umeyama(x_cam, X_world, with_scale=True)
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = sim.R, sim.t
    return c2w


def _robust_weights(r: np.ndarray, floor: float, redescending: bool) -> np.ndarray:
    """IRLS weights of residual norms r at the MAD scale σ: Huber (1.345σ), or Tukey's biweight
    (4.685σ; points beyond get weight 0) once the pose is close."""
    sigma = max(1.4826 * float(np.median(r)), floor)
    if redescending:
        c = 4.685 * sigma
        return np.where(r < c, (1.0 - (r / c) ** 2) ** 2, 0.0)
    k = 1.345 * sigma
    return np.where(r <= k, 1.0, k / np.maximum(r, 1e-30))


def reprojection_px(X_world: np.ndarray, pix: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """‖π(K, w2c · X) − pix‖ [N] in pixels (inf behind the camera)."""
    w2c = np.linalg.inv(c2w)
    p = X_world @ w2c[:3, :3].T + w2c[:3, 3]
    z = p[:, 2]
    uv = np.stack([K[0, 0] * p[:, 0] / z + K[0, 2], K[1, 1] * p[:, 1] / z + K[1, 2]], 1)
    err = np.linalg.norm(uv - pix, axis=1)
    return np.where(z > 0, err, np.inf)


def bearing_pnp(X_world: np.ndarray, pix: np.ndarray, K: np.ndarray, c2w_init: np.ndarray, iters: int = 20,
                floor_px: float = 0.25, tol: float = 1e-9) -> np.ndarray:
    """c2w [4, 4] minimising the robust reprojection error of world points X [N, 3] seen at pixels
    pix [N, 2] (OpenCV axes, K in pixels), by Gauss–Newton from c2w_init: Huber weights for the first
    half of the iterations, Tukey's biweight after (misplaced points then stop pulling). Points
    behind the camera are left out; with fewer than 6 usable points c2w_init is returned."""
    w2c = np.linalg.inv(c2w_init)
    R, t = w2c[:3, :3].copy(), w2c[:3, 3].copy()
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    X = np.asarray(X_world, np.float64)
    pix = np.asarray(pix, np.float64)
    for it in range(iters):
        p = X @ R.T + t
        ok = p[:, 2] > 1e-9
        if ok.sum() < 6:
            break
        p, q = p[ok], pix[ok]
        iz = 1.0 / p[:, 2]
        r = np.stack([fx * p[:, 0] * iz + cx - q[:, 0], fy * p[:, 1] * iz + cy - q[:, 1]], 1)  # [M, 2]
        w = _robust_weights(np.linalg.norm(r, axis=1), floor_px, redescending=it >= iters // 2)
        # rows d(u)/d(ω, v) and d(v)/d(ω, v) for the left update p ← p + ω × p + v: (p × g, g), g = d(u)/dp
        gu = np.stack([fx * iz, np.zeros_like(iz), -fx * p[:, 0] * iz**2], 1)
        gv = np.stack([np.zeros_like(iz), fy * iz, -fy * p[:, 1] * iz**2], 1)
        Ju = np.concatenate([np.cross(p, gu), gu], 1)
        Jv = np.concatenate([np.cross(p, gv), gv], 1)
        H = Ju.T @ (w[:, None] * Ju) + Jv.T @ (w[:, None] * Jv)
        g = Ju.T @ (w * r[:, 0]) + Jv.T @ (w * r[:, 1])
        delta = np.linalg.solve(H + 1e-12 * np.trace(H) * np.eye(6), -g)
        dR = Rotation.from_rotvec(delta[:3]).as_matrix()
        R, t = dR @ R, dR @ t + delta[3:]
        if it >= iters // 2 and np.abs(delta[:3]).max() < tol and np.abs(delta[3:]).max() < tol * max(np.abs(t).max(), 1.0):
            break
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R.T, -R.T @ t
    return out

