"""Precision of the canonical cloud: keep a fused voxel only when the aligned frames support it.

Each aligned frame j has a world point map Q_j[v, u] (its surface pixels placed by its alignment).
A canonical point P is projected into frame j with its aligned camera A_j; with z_P its depth there
and z_Q the depth of Q_j at that pixel (both in camera j):

    |z_Q − z_P| ≤ tol · z_P     → frame j *supports* P (it saw a surface there)
    z_Q > z_P + tol · z_P       → frame j saw *through* P: P lies in its free space (a violation)
    z_Q < z_P − tol · z_P, none → no evidence (P occluded, or off the frame's surface pixels)

P is kept when support ≥ min_support and violations ≤ max_violation_frac × support, or when one
frame alone saw it with conf ≥ solo_conf and no frame saw through it. A surface seen consistently by
three frames is never removed (support 3, no violations); a floater of one misaligned frame is seen
through by the frames around it. Frames whose alignment failed are neither merged nor asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FuseConfig:
    """Support filter of the canonical cloud (--icp.fuse.*)."""

    enabled: bool = True
    """Drop canonical points the aligned frames do not support (off: every fused voxel is kept)."""
    min_support: int = 2
    """Frames that must see a surface at the point (its own frames included)."""
    tol: float = 0.015
    """Depth agreement tolerance, relative to the point's depth in the frame."""
    max_violation_frac: float = 0.5
    """Most frames seeing through the point, as a fraction of its supporting frames."""
    solo_conf: float = float("inf")
    """A point with support 1 is kept when its summed confidence is at least this and no frame sees
    through it (inf: off; results.npz conf is often constant, so it would keep every point)."""


@dataclass
class SupportStats:
    """What the filter did (align/metrics.json "fuse")."""

    points_before: int
    points_after: int
    removed_low_support: int
    removed_free_space: int


def frame_evidence(P: np.ndarray, c2w_aligned: np.ndarray, K: np.ndarray, pointmap: np.ndarray,
                   tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(supports [N] bool, sees_through [N] bool) of one frame for world points P [N, 3]."""
    w2c = np.linalg.inv(c2w_aligned)
    p = P @ w2c[:3, :3].T + w2c[:3, 3]
    z = p[:, 2]
    H, W = pointmap.shape[:2]
    front = z > 1e-9
    zs = np.where(front, z, 1.0)
    u = np.rint(K[0, 0] * p[:, 0] / zs + K[0, 2]).astype(np.int64)
    v = np.rint(K[1, 1] * p[:, 1] / zs + K[1, 2]).astype(np.int64)
    inside = front & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    sup = np.zeros(len(P), bool)
    thru = np.zeros(len(P), bool)
    idx = np.nonzero(inside)[0]
    Q = pointmap[v[idx], u[idx]]
    ok = np.all(np.isfinite(Q), axis=1)
    idx, Q = idx[ok], Q[ok]
    zq = Q @ w2c[2, :3] + w2c[2, 3]
    band = tol * z[idx]
    sup[idx] = np.abs(zq - z[idx]) <= band
    thru[idx] = zq > z[idx] + band
    return sup, thru


def support_filter(P: np.ndarray, conf: np.ndarray, cameras: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   cfg: FuseConfig) -> tuple[np.ndarray, SupportStats]:
    """keep [N] bool for canonical points P [N, 3] (summed conf [N]) given, per accepted frame,
    (c2w_aligned [4, 4], K [3, 3], world point map [H, W, 3])."""
    support = np.zeros(len(P), np.int32)
    through = np.zeros(len(P), np.int32)
    for c2w, K, pm in cameras:
        s, t = frame_evidence(P, c2w, K, pm, cfg.tol)
        support += s
        through += t
    free_ok = through <= cfg.max_violation_frac * support
    keep = ((support >= cfg.min_support) & free_ok) | ((support >= 1) & (conf >= cfg.solo_conf) & (through == 0))
    low = int(np.sum(~keep & (support < cfg.min_support)))
    return keep, SupportStats(len(P), int(keep.sum()), low, int(np.sum(~keep)) - low)
