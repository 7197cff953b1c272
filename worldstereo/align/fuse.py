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

Then the depth limit (max_error): generated depth errs in proportion to depth, so a point's expected
error is σ_rel · z_near, σ_rel = 1.4826 × the median of |z_Q − z_P| / z_P over every supporting
observation of the cloud (the frames' measured relative disagreement after alignment) and z_near the
point's smallest depth among the frames that support it. P is dropped when σ_rel · z_near >
max_error × scene scale, i.e. beyond the depth max_error · scale / σ_rel. Only supporting
observations enter σ_rel (so it is at most 1.4826 · tol), and a voxel's own frames agree with it
almost exactly, which pulls σ_rel down (room15: 0.70 %, 0.96 % leaving out each point's closest
agreement); max_error was chosen with this estimator. Consistent frames lose (almost) nothing:
pixel rounding on slanted surfaces alone leaves σ_rel ~0.1 % (the bundled example: 0.13 %, a limit
of 15 × the scene scale that dropped no point).
On the harder benchmark the far walls of the cluttered sweeps, 3–11 × the median depth away, were
placed by extrapolating each frame's alignment, 3–11 τ off (BENCHMARKS.md, issue 15, eighth pass).

Last, the consensus (consensus): each kept P moves to the mean of its supporting frames' surfaces
along their rays, P + mean_j (t_j − 1)(P − c_j), c_j frame j's aligned centre and c_j + t_j (P − c_j)
where that ray meets frame j's surface (`consensus_ratio`: the plane through its surface point at
P's pixel with P's normal), like COLMAP's stereo fusion, which averages the consistent observations
of a pixel. Each frame's residual depth error is its own, so the mean is nearer the truth than any
one frame; a voxel holds the points of the frames that filled it, and the others' votes move it.
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
    max_error: float = 0.02
    """Drop a point whose expected depth error σ_rel · z_near (module docstring) exceeds this fraction
    of the scene scale (frame 0's median depth). 0 = off: keep far surfaces however uncertain."""
    consensus: bool = True
    """Move each kept point to the mean of its supporting frames' surfaces along their rays (module
    docstring); off: each point stays at its voxel's confidence-weighted mean."""


@dataclass
class SupportStats:
    """What the filter did (align/metrics.json "fuse")."""

    points_before: int
    points_after: int
    removed_low_support: int
    removed_free_space: int
    removed_uncertain: int = 0  # past the depth limit (FuseConfig.max_error)
    depth_rel_sigma: float | None = None  # σ_rel: the frames' robust relative depth disagreement
    depth_limit: float | None = None  # max_error · scale / σ_rel (scene units); None: no limit
    consensus_shift: float | None = None  # median distance a kept point moved (scene units); None: off


@dataclass
class FusedCloud:
    """What the support filter hands to canonical.ply."""

    keep: np.ndarray  # [N] bool: the points that passed
    xyz: np.ndarray  # [N, 3] positions, moved by the consensus where it is on
    stats: SupportStats


@dataclass
class FrameEvidence:
    """One frame's view of the canonical points P [N, 3]."""

    supports: np.ndarray  # [N] bool: its surface agrees with P in depth within tol
    through: np.ndarray  # [N] bool: its surface lies behind P (P in its free space)
    z: np.ndarray  # [N] P's depth in the frame
    zq: np.ndarray  # [N] depth of its surface at P's pixel (NaN: none)
    Q: np.ndarray  # [N, 3] that surface point in the world (NaN: none)


def frame_evidence(P: np.ndarray, c2w_aligned: np.ndarray, K: np.ndarray, pointmap: np.ndarray,
                   tol: float) -> FrameEvidence:
    """What one frame (aligned camera, world point map [H, W, 3]) says about world points P [N, 3]."""
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
    Q = np.full((len(P), 3), np.nan)
    Q[idx] = pointmap[v[idx], u[idx]]
    idx = idx[np.all(np.isfinite(Q[idx]), axis=1)]
    zq = np.full(len(P), np.nan)
    zq[idx] = Q[idx] @ w2c[2, :3] + w2c[2, 3]
    band = tol * z[idx]
    sup[idx] = np.abs(zq[idx] - z[idx]) <= band
    thru[idx] = zq[idx] > z[idx] + band
    return FrameEvidence(sup, thru, z, zq, Q)


def consensus_ratio(P: np.ndarray, normal: np.ndarray | None, centre: np.ndarray, z: np.ndarray,
                    zq: np.ndarray, Q: np.ndarray, tol: float) -> np.ndarray:
    """t [M] for supported points P [M, 3] (their FrameEvidence z, zq, Q in one frame): that frame's
    surface along the ray from its centre through P lies at centre + t (P − centre). With P's unit
    normal, t meets the plane through the surface point Q with that normal, so P's exact pixel and
    not the rounded one decides (on a slanted surface z_Q / z_P at the rounded pixel is off by the
    slope × half a pixel); without, or at grazing incidence (|cos| < 0.1), t = z_Q / z_P. Clipped to
    the support band 1 ± tol."""
    t = zq / z
    if normal is not None:
        ray = P - centre
        den = np.sum(ray * normal, axis=1)
        ok = np.abs(den) > 0.1 * np.linalg.norm(ray, axis=1)
        num = np.sum((Q - centre) * normal, axis=1)
        t = np.where(ok, num / np.where(ok, den, 1.0), t)
    return np.clip(t, 1.0 - tol, 1.0 + tol)


def support_filter(P: np.ndarray, conf: np.ndarray, cameras: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   cfg: FuseConfig, scale: float, normals: np.ndarray | None = None) -> FusedCloud:
    """The canonical points P [N, 3] (summed conf [N], unit normals [N, 3] or None) that pass, and
    where they go, given per accepted frame (c2w_aligned [4, 4], K [3, 3], world point map
    [H, W, 3]); scale: the scene scale (max_error's unit)."""
    support = np.zeros(len(P), np.int32)
    through = np.zeros(len(P), np.int32)
    z_near = np.full(len(P), np.inf)
    shift = np.zeros_like(P, dtype=np.float64)  # Σ over supporting frames of the move onto their surface
    rel: list[np.ndarray] = []  # |z_Q − z_P| / z_P of every supporting observation
    for c2w, K, pm in cameras:
        ev = frame_evidence(P, c2w, K, pm, cfg.tol)
        s = ev.supports
        support += s
        through += ev.through
        z_near[s] = np.minimum(z_near[s], ev.z[s])
        rel.append((np.abs(ev.zq[s] - ev.z[s]) / ev.z[s]).astype(np.float32))
        if cfg.consensus:
            t = consensus_ratio(P[s], None if normals is None else normals[s], c2w[:3, 3], ev.z[s], ev.zq[s],
                                ev.Q[s], cfg.tol)
            shift[s] += (t - 1.0)[:, None] * (P[s] - c2w[:3, 3])
    free_ok = through <= cfg.max_violation_frac * support
    keep = ((support >= cfg.min_support) & free_ok) | ((support >= 1) & (conf >= cfg.solo_conf) & (through == 0))
    low = int(np.sum(~keep & (support < cfg.min_support)))
    free = int(np.sum(~keep)) - low
    all_rel = np.concatenate(rel) if rel else np.zeros(0, np.float32)
    sigma = 1.4826 * float(np.median(all_rel)) if len(all_rel) else None
    limit = None
    uncertain = 0
    if cfg.max_error > 0 and sigma is not None and sigma > 0:
        limit = cfg.max_error * scale / sigma
        near = (z_near <= limit) | (support == 0)  # no supporting view: the other tests judge it
        uncertain = int(np.sum(keep & ~near))
        keep &= near
    xyz, moved = P, None
    if cfg.consensus:
        xyz = P + shift / np.maximum(support, 1)[:, None]
        moved = float(np.median(np.linalg.norm(xyz[keep] - P[keep], axis=1))) if keep.any() else 0.0
    stats = SupportStats(len(P), int(keep.sum()), low, free, uncertain, sigma, limit, moved)
    return FusedCloud(keep, xyz, stats)
