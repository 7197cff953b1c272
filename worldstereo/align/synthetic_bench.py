"""Synthetic inconsistency benchmark: known scene and poses, per-frame depth distorted the way
generated videos are (scale drift, smooth low-frequency warps, optionally rigid pose noise).

Frame 0 is left undistorted: it plays the input view whose depth defines the world (the gauge).
Frame i > 0 gets
    depth_i'(u, v) = s_i · (1 + a Σ_k sin(2π(f_k·(u/W, v/H)) + φ_k)) · depth_i(u, v)
with s_i a smooth drift within ±`scale_drift` and a ≈ `warp_amp`, and a pose c2w_i · ΔT_i when
`rigid_rot_deg` / `rigid_trans` > 0.

>>> data = make_inconsistent(SyntheticConfig(frames=10))
>>> data.results      # FrameResults (distorted depth, given poses), data.gt_xyz [M, 3]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from worldstereo.geometry import unproject_depth, voxel_downsample
from worldstereo.io.results import FrameResults


@dataclass
class SyntheticConfig:
    """One synthetic inconsistency case."""

    kind: str = "room"
    """worldstereo.synthetic scene kind (room, objects, outdoor)."""
    seed: int = 0
    """Scene and distortion seed."""
    path: str = "orbit"
    """Camera path name (synthetic.SyntheticScene.path)."""
    frames: int = 20
    """Frames rendered."""
    width: int = 160
    """Render width."""
    height: int = 120
    """Render height."""
    scale_drift: float = 0.10
    """Largest per-frame depth scale error (fraction)."""
    warp_amp: float = 0.03
    """Amplitude of the smooth multiplicative depth warp."""
    rigid_rot_deg: float = 0.0
    """Random pose rotation error per frame (degrees)."""
    rigid_trans: float = 0.0
    """Random pose translation error per frame (fraction of the median depth)."""


@dataclass
class SyntheticData:
    results: FrameResults  # distorted depth + given (possibly perturbed) poses
    true_c2w: np.ndarray  # [F, 4, 4]
    true_depth: np.ndarray  # [F, H, W]
    gt_xyz: np.ndarray  # [M, 3] union of true frame points (voxel-downsampled)
    scale: float  # median depth of frame 0


def depth_warp(height: int, width: int, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field [H, W] around 1 (≤ 1 cycle per image, 3 waves)."""
    v, u = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    field = np.zeros((height, width))
    for _ in range(3):
        fx, fy = rng.uniform(-1.0, 1.0, 2)
        field += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * (fx * u + fy * v) + rng.uniform(0, 2 * np.pi))
    return 1.0 + amp * field / 2.0


def render_frames(cfg: SyntheticConfig) -> tuple[list, np.ndarray, np.ndarray]:
    """(cameras, rgb [F, H, W, 3] uint8, depth [F, H, W] with 0 where nothing was hit)."""
    from worldstereo.synthetic import make_scene

    scene = make_scene(cfg.kind, cfg.seed)
    cams = scene.path(cfg.path, cfg.frames, cfg.width, cfg.height)
    rgbs, depths = [], []
    for cam in cams:
        rgb, depth = scene.render(cam)
        depths.append(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0))
        rgbs.append(rgb)
    return cams, np.stack(rgbs), np.stack(depths)


def make_inconsistent(cfg: SyntheticConfig) -> SyntheticData:
    cams, rgb, depth = render_frames(cfg)
    rng = np.random.default_rng(cfg.seed + 1000)
    F, H, W = depth.shape
    scale = float(np.median(depth[0][depth[0] > 0]))
    t = np.linspace(0.0, 1.0, F)
    phase = rng.uniform(0, 2 * np.pi)
    drift = np.sin(2 * np.pi * 0.75 * t + phase) - np.sin(phase)  # 0 at frame 0, smooth
    drift = cfg.scale_drift * drift / max(np.abs(drift).max(), 1e-9)
    dist = np.empty_like(depth)
    w2c = np.empty((F, 3, 4))
    true_c2w = np.stack([c.c2w for c in cams])
    for i in range(F):
        d = depth[i] * (1.0 + drift[i])
        if i > 0 and cfg.warp_amp > 0:
            d = d * depth_warp(H, W, cfg.warp_amp, rng)
        dist[i] = np.where(depth[i] > 0, d, 0.0)
        c2w = true_c2w[i].copy()
        if i > 0 and (cfg.rigid_rot_deg > 0 or cfg.rigid_trans > 0):
            dT = np.eye(4)
            dT[:3, :3] = Rotation.from_rotvec(np.radians(cfg.rigid_rot_deg) * _unit(rng)).as_matrix()
            dT[:3, 3] = cfg.rigid_trans * scale * _unit(rng)
            c2w = c2w @ dT
        w2c[i] = np.linalg.inv(c2w)[:3]
    K = np.stack([c.K for c in cams])
    res = FrameResults(dist.astype(np.float32), (depth > 0).astype(np.float32), w2c.astype(np.float32),
                       K.astype(np.float32), rgb.astype(np.uint8))
    gt = np.concatenate([unproject_depth(np.where(depth[i] > 0, depth[i], np.nan), K[i], true_c2w[i]).reshape(-1, 3)
                         for i in range(F)])
    gt = gt[np.all(np.isfinite(gt), axis=1)]
    gt, _ = voxel_downsample(gt, 0.002 * scale)
    return SyntheticData(res, true_c2w, depth, gt, scale)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def naive_fusion(results: FrameResults, points_per_frame: int, voxel: float, seed: int = 0) -> np.ndarray:
    """Unproject every frame with its given pose, same sampling as the aligner, voxel-merged."""
    rng = np.random.default_rng(seed)
    c2w = results.c2w()
    pts = []
    for i in range(len(results)):
        p = unproject_depth(results.depth[i].astype(np.float64), results.K[i].astype(np.float64), c2w[i]).reshape(-1, 3)
        p = p[np.all(np.isfinite(p), axis=1)]
        if len(p) > points_per_frame:
            p = p[rng.choice(len(p), points_per_frame, replace=False)]
        pts.append(p)
    out, _ = voxel_downsample(np.concatenate(pts), voxel)
    return out


def score(rec: np.ndarray, gt: np.ndarray, tau: float) -> dict:
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


def write_scene(root, data: SyntheticData) -> None:
    """A video_to_world-style folder: only exports/npz/results.npz (no scene.json)."""
    from pathlib import Path

    from worldstereo.io.results import save_results

    save_results(Path(root) / "exports" / "npz" / "results.npz", data.results)
