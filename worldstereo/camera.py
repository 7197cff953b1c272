"""`from worldstereo.camera import load_trajectory`: one reader for ours, WorldStereo camera.json,
Uni3C cam_info.json and NeRF / nerfstudio transforms.json (the first three live in cameras.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from worldstereo import cameras as _cameras
from worldstereo.cameras import Camera, Trajectory, save_trajectory  # noqa: F401  (re-exported)
from worldstereo.errors import InputError
from worldstereo.geometry import is_rigid

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes flip (y up, z back → y down, z forward)


def load_trajectory(path: str | Path) -> Trajectory:
    """Read a trajectory file in any of the four formats (detected from its keys)."""
    path = Path(path)
    data = _read_json(path)
    frames = data.get("frames") if isinstance(data, dict) else None
    if isinstance(frames, list) and frames and isinstance(frames[0], dict) and "transform_matrix" in frames[0]:
        return trajectory_from_transforms(data, path)
    return _cameras.load_trajectory(path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "trajectory file not found")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a readable JSON file ({e.__class__.__name__})")


def _intrinsics(frame: dict, top: dict, path: Path, i: int) -> tuple[np.ndarray, int, int]:
    """K (OpenCV, pixel centres at integers) and size of one transforms.json frame; per-frame keys
    override the top-level ones; cx / cy are nerfstudio's (pixel centres at +0.5)."""
    get = lambda k: frame.get(k, top.get(k))  # noqa: E731
    W, H = get("w"), get("h")
    if not isinstance(W, (int, float)) or not isinstance(H, (int, float)) or W <= 0 or H <= 0:
        raise InputError(path, f"frame {i}: missing or invalid 'w' / 'h'")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * W / math.tan(0.5 * float(get("camera_angle_x")))
    if fx is None:
        raise InputError(path, f"frame {i}: no focal length ('fl_x' or 'camera_angle_x')")
    fy = fx if fy is None else fy
    cx = get("cx") if get("cx") is not None else W / 2.0
    cy = get("cy") if get("cy") is not None else H / 2.0
    K = np.array([[fx, 0, float(cx) - 0.5], [0, fy, float(cy) - 0.5], [0, 0, 1]], dtype=np.float64)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(path, f"frame {i}: invalid intrinsics")
    return K, int(W), int(H)


def trajectory_from_transforms(data: dict, path: str | Path = "transforms.json") -> Trajectory:
    """NeRF / nerfstudio transforms.json (OpenGL c2w `transform_matrix`, intrinsics per frame or at
    the top) → Trajectory with OpenCV c2w. All frames must share one image size."""
    path = Path(path)
    cams = []
    for i, f in enumerate(data["frames"]):
        try:
            M = np.asarray(f["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"frame {i}: 'transform_matrix' missing or not numeric")
        if M.shape == (3, 4):
            M = np.vstack([M, [0, 0, 0, 1]])
        if M.shape != (4, 4) or not is_rigid(M):
            raise InputError(path, f"frame {i}: 'transform_matrix' is not a rigid 4x4 transform")
        K, W, H = _intrinsics(f, data, path, i)
        cams.append(Camera(K, M @ OPENGL_TO_OPENCV, W, H))
    if len({(c.width, c.height) for c in cams}) != 1:
        raise InputError(path, "frames have different image sizes")
    return Trajectory(cams, path.stem)


__all__ = ["Camera", "Trajectory", "load_trajectory", "save_trajectory", "trajectory_from_transforms"]
