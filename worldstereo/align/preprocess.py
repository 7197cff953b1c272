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

from worldstereo.depth.mvs import MVSConfig
from worldstereo.errors import InputError
from worldstereo.geometry import c2w_to_w2c, unproject_depth, w2c_to_c2w
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
    """Drop pixels whose depth differs from a 4-neighbour by more than this fraction (edges)."""
    video_max_frames: int = 100
    """Outside videos: keep at most this many frames (video_to_world: 100)."""
    video_max_stride: int = 8
    """Outside videos: subsample by at most this stride (video_to_world: 8)."""
    depth_source: Literal["npz", "model", "mvs"] = "npz"
    """Outside videos: depth from --depth-npz, a local transformers depth model, or plane-sweep MVS
    (model and mvs take the poses from --cameras)."""
    depth_model_dir: Path | None = None
    """Local folder of a transformers depth model (AutoModelForDepthEstimation; never downloaded)."""
    depth_model_output: Literal["depth", "disparity"] = "depth"
    """What the depth model predicts; disparity is inverted (1/x) and scaled to median depth 1."""
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


def edge_mask(depth: np.ndarray, max_jump: float) -> np.ndarray:
    """[H, W] bool: True where all 4-neighbours are within max_jump relative depth."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    ok = np.isfinite(d)
    pad = np.pad(d, 1, constant_values=np.nan)
    for sl in (pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]):
        with np.errstate(invalid="ignore"):
            ok &= np.abs(sl - d) <= max_jump * d
    return ok


def frame_points(r: FrameResults, i: int, cfg: PreprocessConfig) -> FramePoints:
    """Sample up to cfg.points_per_frame valid pixels of frame i as camera-space points."""
    depth = r.depth[i].astype(np.float64)
    K = r.K[i].astype(np.float64)
    pts = unproject_depth(depth, K)
    normals = depth_normals(pts)
    valid = edge_mask(depth, cfg.max_depth_jump) & (r.conf[i] >= cfg.min_conf)
    valid &= np.all(np.isfinite(normals), axis=-1)
    v, u = np.nonzero(valid)
    rng = np.random.default_rng(cfg.seed + int(i))
    if len(u) > cfg.points_per_frame:
        pick = np.sort(rng.choice(len(u), cfg.points_per_frame, replace=False))
        u, v = u[pick], v[pick]
    return FramePoints(
        index=int(i), xyz=pts[v, u], normal=normals[v, u], rgb=r.image[i][v, u].astype(np.float64) / 255.0,
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
        images = _resize_frames([frames[k] for k in keep], r.depth.shape[2], r.depth.shape[1])
        r = FrameResults(r.depth, r.conf, r.extrinsics_w2c, r.K, images)
    elif cfg.depth_source == "model":
        if cfg.depth_model_dir is None or not Path(cfg.depth_model_dir).is_dir():
            raise InputError(cfg.depth_model_dir, "--preprocess.depth-model-dir must be a local model folder")
        traj = _video_cameras(cameras, video, len(frames), keep, "a depth model gives no poses")
        r = _depth_from_model([frames[k] for k in keep], cfg, traj)
    else:
        traj = _video_cameras(cameras, video, len(frames), keep, "MVS needs known cameras")
        r = _depth_from_mvs([frames[k] for k in keep], cfg, traj, cameras)
    save_results(out_npz, r)
    return r


def _resize_frames(frames: list[np.ndarray], width: int, height: int) -> np.ndarray:
    import cv2

    out = [f if f.shape[:2] == (height, width) else cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
           for f in frames]
    return np.stack([o[..., :3] for o in out]).astype(np.uint8)


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


def _scaled_cameras(traj, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """K [N, 3, 3] for frames resized to width × height, and c2w [N, 4, 4], of a trajectory."""
    from worldstereo.cameras import scale_intrinsics

    sx, sy = width / traj.width, height / traj.height
    return np.stack([scale_intrinsics(c.K, sx, sy) for c in traj.cameras]), traj.c2w()


def _depth_from_model(frames: list[np.ndarray], cfg: PreprocessConfig, traj) -> FrameResults:
    """Per-frame depth from a local transformers depth model; poses from a trajectory JSON."""
    depth = estimate_depth_local(np.stack(frames), Path(cfg.depth_model_dir), cfg.depth_model_output)
    n, h, w = depth.shape
    images = _resize_frames(frames, w, h)
    K, c2w = _scaled_cameras(traj, w, h)
    w2c = c2w_to_w2c(c2w)
    return FrameResults(depth.astype(np.float32), np.ones_like(depth, dtype=np.float32),
                        w2c.astype(np.float32), K.astype(np.float32), images)


def _depth_from_mvs(frames: list[np.ndarray], cfg: PreprocessConfig, traj, cameras: Path) -> FrameResults:
    """Per-frame depth and confidence by plane-sweep MVS with the trajectory's cameras; frames with a
    side above cfg.mvs.max_side are downscaled first."""
    from worldstereo.depth.mvs import mvs_sequence

    h0, w0 = frames[0].shape[:2]
    s = min(1.0, cfg.mvs.max_side / max(h0, w0))
    w, h = int(round(w0 * s)), int(round(h0 * s))
    images = _resize_frames(frames, w, h)
    K, c2w = _scaled_cameras(traj, w, h)
    depth, conf = mvs_sequence(images, K, c2w, cfg.mvs)
    if not (depth > 0).any():
        raise InputError(cameras, "MVS found no reliable depth in any frame "
                                  "(do the cameras move, and do they belong to this video?)")
    w2c = c2w_to_w2c(c2w)
    return FrameResults(depth, conf, w2c.astype(np.float32), K.astype(np.float32), images)


def estimate_depth_local(images: np.ndarray, model_dir: Path, output: str = "depth") -> np.ndarray:
    """Depth [N, H, W] for RGB uint8 images [N, H, W, 3] with a local AutoModelForDepthEstimation."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(str(model_dir), local_files_only=True).eval()
    proc = AutoImageProcessor.from_pretrained(str(model_dir), local_files_only=True)
    out = []
    for img in images:
        with torch.no_grad():
            pred = model(**proc(images=img, return_tensors="pt")).predicted_depth  # [1, h, w]
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=img.shape[:2], mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
        if output == "disparity":
            pred = 1.0 / np.maximum(pred, 1e-6)
            pred = pred / np.median(pred)
        out.append(np.maximum(pred, 1e-6))
    return np.stack(out)
