"""Scene quality without ground truth, for every run: completeness, geometric and multiview
consistency of the frames in exports/npz/results.npz (all values in 0..1, higher is better).

- completeness: mean over the frames' cameras of the fraction of `cell`×`cell` pixel cells that
  at least one scene point projects into (in front of the camera). Scene points = the 3D cache when
  given, else all frames' depth unprojected. Measures how much of each rendered view is covered.
- geometric consistency: for ordered frame pairs (i → j), unproject i's depth (every `stride`-th
  pixel), project into j and compare with j's depth at the 4 pixels around the projection, keeping
  the best-matching one (robust to pixel sampling). With r = (z_i→j − z_j)/z_j:
  agree if |r| ≤ rel_tol; conflict if r < −rel_tol (i's point floats in front of j's surface);
  r > rel_tol is an occlusion and is not counted. GC = Σ agree / Σ (agree + conflict) over pairs.
- multiview consistency: among the agreeing pixels, the fraction whose colours match, i.e. whose
  mean absolute RGB difference is ≤ colour_tol (fraction of 255).
Pairs: consecutive frames and (input frame 0, every frame), both directions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from worldstereo.geometry import as_4x4, unproject_depth, w2c_to_c2w
from worldstereo.io.results import FrameResults


@dataclass
class QualityScores:
    completeness: float
    geometric_consistency: float
    multiview_consistency: float
    n_frames: int
    n_pairs: int

    def as_dict(self) -> dict:
        return asdict(self)


def _project(pts: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[:, 0] / z + K[0, 2]
        v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    return u, v, z


def coverage(points: np.ndarray, K: np.ndarray, w2c: np.ndarray, width: int, height: int, cell: int = 4) -> float:
    """Fraction of cell×cell pixel cells of one view hit by at least one point in front of it."""
    u, v, z = _project(points, K, w2c)
    ok = (z > 1e-6) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    gw, gh = -(-width // cell), -(-height // cell)
    cu = (np.round(u[ok]).astype(np.int64) // cell).clip(0, gw - 1)
    cv = (np.round(v[ok]).astype(np.int64) // cell).clip(0, gh - 1)
    hit = np.zeros(gw * gh, bool)
    hit[cv * gw + cu] = True
    return float(hit.mean())


def pair_agreement(r: FrameResults, i: int, j: int, stride: int = 2, rel_tol: float = 0.01,
                   colour_tol: float = 0.1) -> tuple[int, int, int]:
    """Counts (agree, conflict, colour-agree) of frame i's pixels reprojected into frame j."""
    H, W = r.depth.shape[1:]
    d = r.depth[i, ::stride, ::stride].astype(np.float64)
    K_sub = r.K[i].astype(np.float64).copy()
    K_sub[:2] /= stride  # pixel centres u' = u / stride on the strided grid
    c2w_i = w2c_to_c2w(r.extrinsics_w2c[i])
    pts = unproject_depth(d, K_sub, c2w_i).reshape(-1, 3)
    col_i = r.image[i, ::stride, ::stride].reshape(-1, 3)
    ok = np.all(np.isfinite(pts), axis=1)
    pts, col_i = pts[ok], col_i[ok]
    u, v, z = _project(pts, r.K[j].astype(np.float64), as_4x4(r.extrinsics_w2c[j]))
    inb = (z > 1e-6) & (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)
    u, v, z, col_i = u[inb], v[inb], z[inb], col_i[inb]
    # the 4 pixels around the projection: the best-matching one decides (sampling-robust)
    best = np.full(len(z), np.inf)  # |r| of the best neighbour
    best_r = np.full(len(z), np.nan)
    best_col = np.zeros((len(z), 3), np.int32)
    for du in (0, 1):
        for dv in (0, 1):
            uu = np.clip(np.floor(u).astype(np.int64) + du, 0, W - 1)
            vv = np.clip(np.floor(v).astype(np.int64) + dv, 0, H - 1)
            dj = r.depth[j][vv, uu].astype(np.float64)
            ok = np.isfinite(dj) & (dj > 0)
            rel = np.where(ok, (z - dj) / np.where(ok, dj, 1.0), np.nan)
            better = ok & (np.abs(rel) < best)
            best[better], best_r[better] = np.abs(rel[better]), rel[better]
            best_col[better] = r.image[j][vv[better], uu[better]]
    valid = np.isfinite(best_r)
    agree = valid & (best <= rel_tol)
    conflict = valid & (best_r < -rel_tol)
    colour_ok = np.abs(col_i[agree].astype(np.int32) - best_col[agree]).mean(axis=1) <= colour_tol * 255
    return int(agree.sum()), int(conflict.sum()), int(colour_ok.sum())


def frame_pairs(n: int) -> list[tuple[int, int]]:
    """Consecutive frames and (0, every frame), both directions, without repeats."""
    pairs = {(k, k + 1) for k in range(n - 1)} | {(0, k) for k in range(1, n)}
    return sorted(pairs | {(b, a) for a, b in pairs})


def score_quality(r: FrameResults, points: np.ndarray | None = None, stride: int = 2, rel_tol: float = 0.01,
                  colour_tol: float = 0.1, cell: int = 4, max_points: int = 500_000, seed: int = 0) -> QualityScores:
    """All three no-reference scores of one run (definitions in the module docstring)."""
    n, H, W = r.depth.shape
    if points is None:  # all frames' depth, unprojected
        parts = [unproject_depth(r.depth[k].astype(np.float64), r.K[k].astype(np.float64),
                                 w2c_to_c2w(r.extrinsics_w2c[k])).reshape(-1, 3) for k in range(n)]
        points = np.concatenate(parts)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) > max_points:
        points = points[np.random.default_rng(seed).choice(len(points), max_points, replace=False)]
    comp = float(np.mean([coverage(points, r.K[k].astype(np.float64), as_4x4(r.extrinsics_w2c[k]), W, H, cell)
                          for k in range(n)])) if len(points) else 0.0
    pairs = frame_pairs(n)
    agree = conflict = colour = 0
    for i, j in pairs:
        a, c, col = pair_agreement(r, i, j, stride, rel_tol, colour_tol)
        agree, conflict, colour = agree + a, conflict + c, colour + col
    gc = agree / (agree + conflict) if agree + conflict else float("nan")
    mvc = colour / agree if agree else float("nan")
    return QualityScores(comp, float(gc), float(mvc), n, len(pairs))
