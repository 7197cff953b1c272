"""Preprocess: pick frames (count, stride, offset), bring outside videos into the scene folder,
and turn each chosen frame into camera-space points with normals, colours and confidence.

Frame selection is the one place where `frames`, `stride` and `offset` are interpreted; every
later step keeps the original results.npz index of each frame (`FramePoints.index`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from worldstereo.depth.model import DepthOutput
from worldstereo.depth.mvs import MVSConfig
from worldstereo.depth.video import depth_from_model, depth_from_mvs
from worldstereo.errors import InputError
from worldstereo.geometry import depth_discontinuities, unproject_depth, w2c_to_c2w
from worldstereo.io.images import resize_images
from worldstereo.io.results import FrameResults, load_results, save_results


@dataclass
class PreprocessConfig:
    """Which frames to align and how each becomes a point set."""

    frames: int = 50
    """Most frames to align (video_to_world: 50 for ICP)."""
    stride: int = 2
    """Take every stride-th frame of results.npz."""
    offset: int = 0
    """Index of the first frame taken (honoured by every later step and by warp())."""
    points_per_frame: int = 20000
    """Points sampled per frame (uniform over valid pixels, fixed seed)."""
    min_conf: float = 0.0
    """Pixels with conf below this are dropped."""
    max_depth_jump: float = 0.05
    """Drop pixels whose depth differs from a 4-neighbour's by more than this fraction of the nearer
    depth (both sides of a depth edge; geometry.depth_discontinuities)."""
    video_max_frames: int = 100
    """Outside videos: keep at most this many frames (video_to_world: 100)."""
    video_max_stride: int = 8
    """Outside videos: subsample by at most this stride (video_to_world: 8)."""
    depth_source: Literal["npz", "model", "mvs"] = "npz"
    """Outside videos: depth from --depth-npz, a local transformers depth model, or plane-sweep MVS
    (model and mvs take the poses from --cameras)."""
    depth_model_dir: Path | None = None
    """Local folder of a transformers depth model (AutoModelForDepthEstimation; never downloaded)."""
    depth_model_output: DepthOutput = "metric"
    """What the depth model predicts: metres (used as is), relative disparity or relative depth (both
    scaled per frame to --preprocess.depth-model-median-m); the same conversion as run_pipeline.py's."""
    depth_model_median_m: float = 1.0
    """Median depth given to each frame's relative output (disparity, depth)."""
    seed: int = 0
    """Seed of the point sampling."""
    mvs: MVSConfig = field(default_factory=MVSConfig)
    """Plane-sweep MVS for --preprocess.depth-source mvs (worldstereo/depth/mvs.py)."""


def select_frames(n_total: int, frames: int, stride: int, offset: int) -> np.ndarray:
    """Original indices offset, offset+stride, … (at most `frames` of them, all < n_total)."""
    if stride < 1:
        raise InputError(None, f"--preprocess.stride must be ≥ 1 (got {stride})")
    if not 0 <= offset < n_total:
        raise InputError(None, f"--preprocess.offset {offset} is outside the {n_total} frames available")
    idx = np.arange(offset, n_total, stride)[: max(frames, 1)]
    if len(idx) < 1:
        raise InputError(None, "no frames selected: check --preprocess.frames/stride/offset")
    return idx


def video_stride(n_frames: int, max_frames: int, max_stride: int) -> int:
    """Stride that brings a video under `max_frames`, capped at `max_stride` (video_to_world rule)."""
    return int(min(max_stride, max(1, math.ceil(n_frames / max(max_frames, 1)))))


@dataclass
class FramePoints:
    """One frame as points in its own camera space (OpenCV axes)."""

    index: int  # original frame index in results.npz
    xyz: np.ndarray  # [P, 3] camera space
    normal: np.ndarray  # [P, 3] camera space, facing the camera
    rgb: np.ndarray  # [P, 3] float in [0, 1]
    conf: np.ndarray  # [P]
    pix: np.ndarray  # [P, 2] int (u, v)
    c2w_given: np.ndarray  # [4, 4]
    K: np.ndarray  # [3, 3]
    depth: np.ndarray  # [H, W] (full map, for dense correspondences)
    image: np.ndarray  # [H, W, 3] uint8


def depth_normals(pts: np.ndarray) -> np.ndarray:
    """Normals [H, W, 3] of a camera-space point map [H, W, 3] by central differences, facing the
    camera; NaN where a neighbour is missing."""
    du = np.full_like(pts, np.nan)
    dv = np.full_like(pts, np.nan)
    du[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    dv[1:-1] = pts[2:] - pts[:-2]
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-30
    flip = np.sum(n * pts, axis=-1) > 0
    n[flip] *= -1
    return n


def surface_pixels(depth: np.ndarray, max_jump: float) -> np.ndarray:
    """[H, W] bool: pixels that may become points or match targets: with depth, their 4 neighbours
    with depth too (normals by central differences need them; image borders are out), and no depth
    discontinuity (relative jump > max_jump, geometry.depth_discontinuities) to a neighbour."""
    has = np.isfinite(depth) & (depth > 0)
    pad = np.pad(has, 1, constant_values=False)
    neighbours = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return has & neighbours & ~depth_discontinuities(depth, max_jump)


def frame_points(r: FrameResults, i: int, cfg: PreprocessConfig) -> FramePoints:
    """Sample up to cfg.points_per_frame valid pixels of frame i as camera-space points."""
    depth = r.depth[i].astype(np.float64)
    K = r.K[i].astype(np.float64)
    pts = unproject_depth(depth, K)
    normals = depth_normals(pts)
    valid = surface_pixels(depth, cfg.max_depth_jump) & (r.conf[i] >= cfg.min_conf)
    valid &= np.all(np.isfinite(normals), axis=-1)
    v, u = np.nonzero(valid)
    rng = np.random.default_rng(cfg.seed + int(i))
    if len(u) > cfg.points_per_frame:
        pick = np.sort(rng.choice(len(u), cfg.points_per_frame, replace=False))
        u, v = u[pick], v[pick]
    xyz = pts[v, u]
    xyz.setflags(write=False)  # fixed for the whole run: grids cache their weights for it
    return FramePoints(
        index=int(i), xyz=xyz, normal=normals[v, u], rgb=r.image[i][v, u].astype(np.float64) / 255.0,
        conf=np.maximum(r.conf[i][v, u].astype(np.float64), 1e-3), pix=np.stack([u, v], axis=1),
        c2w_given=w2c_to_c2w(r.extrinsics_w2c[i]), K=K, depth=depth, image=r.image[i],
    )


# --------------------------------------------------------------------------- outside videos


def import_video(video: Path, out_npz: Path, cfg: PreprocessConfig, depth_npz: Path | None,
                 cameras: Path | None = None) -> FrameResults:
    """Frames of `video` (subsampled to ≤ video_max_frames, stride ≤ video_max_stride) with depth
    from `depth_npz`, a local depth model or MVS; written to `out_npz` in the results.npz schema."""
    from worldstereo.io.video import read_video

    if not Path(video).exists():
        raise InputError(video, "file not found")
    frames = read_video(video)
    if not frames:
        raise InputError(video, "video has no frames")
    step = video_stride(len(frames), cfg.video_max_frames, cfg.video_max_stride)
    keep = np.arange(0, len(frames), step)[: cfg.video_max_frames]
    if cfg.depth_source == "npz":
        if depth_npz is None:
            raise InputError(video, "--depth-npz is needed with --preprocess.depth-source npz")
        r = load_results(depth_npz)
        if len(r) == len(frames):
            r = r.subset(keep)
        elif len(r) != len(keep):
            raise InputError(depth_npz, f"holds {len(r)} frames; the video has {len(frames)} "
                                        f"({len(keep)} after subsampling by {step})")
        images = resize_images([frames[k] for k in keep], r.depth.shape[2], r.depth.shape[1])
        r = FrameResults(r.depth, r.conf, r.extrinsics_w2c, r.K, images)
    elif cfg.depth_source == "model":
        if cfg.depth_model_dir is None or not Path(cfg.depth_model_dir).is_dir():
            raise InputError(cfg.depth_model_dir, "--preprocess.depth-model-dir must be a local model folder")
        traj = _video_cameras(cameras, video, len(frames), keep, "a depth model gives no poses")
        r = depth_from_model([frames[k] for k in keep], cfg.depth_model_dir, cfg.depth_model_output,
                             cfg.depth_model_median_m, traj)
    else:
        traj = _video_cameras(cameras, video, len(frames), keep, "MVS needs known cameras")
        r = depth_from_mvs([frames[k] for k in keep], cfg.mvs, traj, cameras)
    save_results(out_npz, r)
    return r


def _video_cameras(cameras: Path | None, video: Path, n_video: int, keep: np.ndarray, why: str):
    """The trajectory of the kept frames: --cameras holds one camera per video frame or per kept frame."""
    if cameras is None:
        raise InputError(video, f"{why}: pass --cameras trajectory.json")
    from worldstereo.cameras import Trajectory, load_trajectory

    traj = load_trajectory(cameras)
    if len(traj) == n_video and n_video != len(keep):
        return Trajectory([traj.cameras[k] for k in keep], traj.name)
    if len(traj) != len(keep):
        raise InputError(cameras, f"has {len(traj)} cameras; the video has {n_video} frames "
                                  f"({len(keep)} after subsampling)")
    return traj
