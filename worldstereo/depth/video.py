"""Depth for the frames of an outside video whose cameras are known (a trajectory JSON): a local
depth model (depth/model.py, the same wrapper run_pipeline.py uses) or plane-sweep MVS
(depth/mvs.py), returned in the results.npz schema with K scaled to the depth maps' size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldstereo.cameras import Trajectory, scale_intrinsics
from worldstereo.depth.model import DepthModel, DepthOutput
from worldstereo.depth.mvs import MVSConfig, mvs_sequence
from worldstereo.errors import InputError
from worldstereo.geometry import c2w_to_w2c
from worldstereo.io.images import resize_images
from worldstereo.io.results import FrameResults


def scaled_cameras(traj: Trajectory, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """K [N, 3, 3] for frames resized to width × height, and c2w [N, 4, 4], of a trajectory."""
    sx, sy = width / traj.width, height / traj.height
    return np.stack([scale_intrinsics(c.K, sx, sy) for c in traj.cameras]), traj.c2w()


def depth_from_model(frames: list[np.ndarray], model_dir: Path, output: DepthOutput, median_depth_m: float,
                     traj: Trajectory) -> FrameResults:
    """Per-frame depth from a local depth model (loaded once; conf 1); poses from the trajectory."""
    model = DepthModel(model_dir)
    depth = np.stack([model.depth(f[..., :3], output, median_depth_m) for f in frames])
    n, h, w = depth.shape
    images = resize_images(frames, w, h)
    K, c2w = scaled_cameras(traj, w, h)
    return FrameResults(depth, np.ones_like(depth, dtype=np.float32), c2w_to_w2c(c2w).astype(np.float32),
                        K.astype(np.float32), images)


def depth_from_mvs(frames: list[np.ndarray], cfg: MVSConfig, traj: Trajectory, cameras: Path | None) -> FrameResults:
    """Per-frame depth and confidence by plane-sweep MVS with the trajectory's cameras; frames with a
    side above cfg.max_side are downscaled first. `cameras` (the trajectory's file) is named in errors."""
    h0, w0 = frames[0].shape[:2]
    s = min(1.0, cfg.max_side / max(h0, w0))
    w, h = int(round(w0 * s)), int(round(h0 * s))
    images = resize_images(frames, w, h)
    K, c2w = scaled_cameras(traj, w, h)
    depth, conf = mvs_sequence(images, K, c2w, cfg)
    if not (depth > 0).any():
        raise InputError(cameras, "MVS found no reliable depth in any frame "
                                  "(do the cameras move, and do they belong to this video?)")
    return FrameResults(depth, conf, c2w_to_w2c(c2w).astype(np.float32), K.astype(np.float32), images)
