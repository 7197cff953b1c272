"""Benchmark scoring: the naive-fusion baseline, F-score / Chamfer and pose errors of the
inconsistency benchmark (definitions in docs/metrics.md)."""

from __future__ import annotations

import numpy as np

from worldstereo.geometry import unproject_depth, voxel_downsample
from worldstereo.io.results import FrameResults


def frame_points(results: FrameResults, k: int, c2w: np.ndarray) -> np.ndarray:
    """Frame k's depth unprojected with the pose c2w [4, 4]: finite points [M, 3] float64."""
    p = unproject_depth(results.depth[k].astype(np.float64), results.K[k].astype(np.float64), c2w).reshape(-1, 3)
    return p[np.all(np.isfinite(p), axis=1)]


def naive_fusion(results: FrameResults, points_per_frame: int, voxel: float, seed: int = 0) -> np.ndarray:
    """Unproject every frame with its given pose, same sampling as the aligner, voxel-merged."""
    rng = np.random.default_rng(seed)
    c2w = results.c2w()
    pts = []
    for i in range(len(results)):
        p = frame_points(results, i, c2w[i])
        if len(p) > points_per_frame:
            p = p[rng.choice(len(p), points_per_frame, replace=False)]
        pts.append(p)
    out, _ = voxel_downsample(np.concatenate(pts), voxel)
    return out


def score(rec: np.ndarray, gt: np.ndarray, tau: float) -> dict[str, float]:
    """F-score, precision, recall at τ and Chamfer (mean of accuracy and completeness means).

    Uses worldstereo.metrics.pointcloud (Tanks-and-Temples style, τ/2 voxel downsampling)."""
    from worldstereo.metrics.pointcloud import score_point_clouds

    s = score_point_clouds(rec, gt, tau)
    return {"fscore": s.fscore, "precision": s.precision, "recall": s.recall,
            "chamfer": 0.5 * (s.accuracy_mean + s.completeness_mean), "tau": tau}


def pose_errors(true_c2w: np.ndarray, c2w: np.ndarray, scale: float) -> np.ndarray:
    """Per-frame pose error: max(rotation angle · scale, translation error) / scale (relative)."""
    out = []
    for T, E in zip(true_c2w, c2w):
        dR = T[:3, :3].T @ E[:3, :3]
        ang = np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))
        out.append(max(ang, np.linalg.norm(T[:3, 3] - E[:3, 3]) / scale))
    return np.array(out)
