"""Camera and Trajectory types, JSON IO in our and neighbouring formats, trajectory planners.

Conventions: OpenCV axes (x right, y down, z forward), K in pixels with pixel centres at integer
coordinates, `c2w` 4×4 rigid. The world frame is the input camera's frame (input c2w = I), so
"up" in the world is −y.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from worldstereo.errors import InputError
from worldstereo.geometry import as_4x4, invert_rigid, is_rigid
from worldstereo.io.dataclass_json import read_json

TrajectoryName = Literal["orbit", "up", "left", "right"]
WORLD_DOWN = np.array([0.0, 1.0, 0.0])


@dataclass
class Camera:
    """A pinhole camera: intrinsics K [3, 3] (pixels), pose c2w [4, 4], image size."""

    K: np.ndarray
    c2w: np.ndarray
    width: int
    height: int

    @property
    def w2c(self) -> np.ndarray:
        return invert_rigid(self.c2w)

    @property
    def center(self) -> np.ndarray:
        return self.c2w[:3, 3]

    def scaled(self, sx: float, sy: float | None = None) -> "Camera":
        """The same camera for an image resized by (sx, sy); keeps pixel centres at integers."""
        sy = sx if sy is None else sy
        return Camera(scale_intrinsics(self.K, sx, sy), self.c2w.copy(),
                      int(round(self.width * sx)), int(round(self.height * sy)))


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K for an image resized by (sx, sy). Pixel centres: u' + 0.5 = sx (u + 0.5)."""
    K2 = np.array(K, dtype=np.float64).copy()
    K2[0, 0] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2


def intrinsics_from_fov(width: int, height: int, fov_deg: float, axis: Literal["x", "y", "long"] = "long") -> np.ndarray:
    """K from a field of view (degrees) along the long side by default; principal point centred."""
    side = {"x": width, "y": height, "long": max(width, height)}[axis]
    f = 0.5 * side / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


@dataclass
class Trajectory:
    """An ordered list of cameras sharing one image size."""

    cameras: list[Camera]
    name: str = "custom"

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def width(self) -> int:
        return self.cameras[0].width

    @property
    def height(self) -> int:
        return self.cameras[0].height

    def c2w(self) -> np.ndarray:
        return np.stack([c.c2w for c in self.cameras])  # [N, 4, 4]

    def K(self) -> np.ndarray:
        return np.stack([c.K for c in self.cameras])  # [N, 3, 3]


# --------------------------------------------------------------------------- planners


def look_at(eye: np.ndarray, target: np.ndarray, down: np.ndarray = WORLD_DOWN) -> np.ndarray:
    """c2w [4, 4] of an OpenCV camera at `eye` looking at `target`, image y along world `down`."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(down, z)
    if np.linalg.norm(x) < 1e-9:  # looking straight along `down`: pick any x ⟂ z
        x = np.cross(np.array([0.0, 0.0, 1.0]), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


@dataclass
class PlannerConfig:
    """Parameters of the four standard trajectories (DESIGN.md, paper Appendix C)."""

    frames: int = 25
    """Frames per trajectory (Wan backends use 81, WorldStereo 2.0 uses 21)."""
    up_deg: float = 45.0
    """Elevation of the last `up` frame about the pivot."""
    side_deg: float = 90.0
    """Azimuth of the last `left` / `right` frame about the vertical axis through the pivot
    (the paper uses 90°, the released WorldStereo 2.0 uses 180°)."""
    orbit_radius: float = 0.3
    """Radius of the `orbit` loop as a fraction of the pivot distance d."""


def _arc(d: float, angles_rad: np.ndarray, direction: np.ndarray, pivot: np.ndarray) -> list[np.ndarray]:
    """Camera centres on a circle of radius d about `pivot`, from the input camera (angle 0)
    towards unit `direction` (⟂ the optical axis)."""
    back = np.array([0.0, 0.0, -1.0])
    return [pivot + d * (math.cos(a) * back + math.sin(a) * direction) for a in angles_rad]


def plan_trajectory(name: TrajectoryName, K: np.ndarray, width: int, height: int, pivot_depth: float,
                    cfg: PlannerConfig = PlannerConfig()) -> Trajectory:
    """Plan one standard trajectory around the pivot at `pivot_depth` on the input optical axis.

    up: camera rises on an arc to `up_deg` elevation; left / right: turns `side_deg` about the
    vertical axis through the pivot; orbit: a closed circle of radius `orbit_radius`·d in the
    input image plane, around the optical axis. All frames look at the pivot.
    """
    d = float(pivot_depth)
    pivot = np.array([0.0, 0.0, d])
    n = cfg.frames
    t = np.linspace(0.0, 1.0, n)
    if name == "up":
        eyes = _arc(d, np.radians(cfg.up_deg) * t, -WORLD_DOWN, pivot)
    elif name in ("left", "right"):
        sign = -1.0 if name == "left" else 1.0
        eyes = _arc(d, np.radians(cfg.side_deg) * t, np.array([sign, 0.0, 0.0]), pivot)
    elif name == "orbit":
        r = cfg.orbit_radius * d
        eyes = [np.array([r * math.cos(a), r * math.sin(a), 0.0]) for a in 2 * math.pi * t]
    else:
        raise ValueError(f"unknown trajectory {name!r}")
    cams = [Camera(np.array(K, np.float64), look_at(e, pivot), width, height) for e in eyes]
    return Trajectory(cams, name)


# --------------------------------------------------------------------------- JSON IO


def as_matrix(value, shape: tuple[int, int], path: Path, what: str) -> np.ndarray:
    """`value` as a finite float64 matrix of `shape`; otherwise a one-line InputError naming `what`."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(path, f"{what} is not a numeric matrix")
    if m.shape != shape or not np.all(np.isfinite(m)):
        raise InputError(path, f"{what} must be a finite {shape[0]}x{shape[1]} matrix, got shape {m.shape}")
    return m


def trajectory_to_dict(traj: Trajectory) -> dict:
    return {
        "name": traj.name,
        "width": traj.width,
        "height": traj.height,
        "frames": [{"c2w": c.c2w.tolist(), "K": c.K.tolist()} for c in traj.cameras],
    }


def save_trajectory(traj: Trajectory, path: Path) -> None:
    from worldstereo.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(trajectory_to_dict(traj), indent=1))


def load_trajectory(path: str | Path) -> Trajectory:
    """Read a trajectory: ours (`frames` with c2w + K), WorldStereo camera.json (`extrinsic`:
    w2c list) or a Uni3C-style cam_info.json (`extrinsics`/`w2c` lists, `intrinsics`)."""
    path = Path(path)
    data = read_json(path, "trajectory file not found")
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    W = data.get("width", data.get("w"))
    H = data.get("height", data.get("h"))
    if not isinstance(W, (int, float)) or not isinstance(H, (int, float)) or W <= 0 or H <= 0:
        raise InputError(path, "missing or invalid 'width' / 'height'")
    W, H = int(W), int(H)
    if "frames" in data:
        c2ws = [f.get("c2w") for f in data["frames"]]
        Ks = [f.get("K") for f in data["frames"]]
    else:
        w2c_key = next((k for k in ("extrinsic", "extrinsics", "w2c") if k in data), None)
        k_key = next((k for k in ("intrinsic", "intrinsics", "K") if k in data), None)
        if w2c_key is None or k_key is None:
            raise InputError(path, "no 'frames', nor 'extrinsic' + 'intrinsic' lists: unknown trajectory format")
        w2cs = data[w2c_key]
        Kv = np.asarray(data[k_key], dtype=np.float64)
        if is_release_camera_json(data) and Kv.ndim in (2, 3) and Kv.shape[-2:] == (3, 3):
            Kv = Kv.copy()
            Kv[..., :2, 2] -= RELEASE_PIXEL_CENTRE  # the release's pixel centres sit at +0.5
        Ks = [Kv] * len(w2cs) if Kv.ndim == 2 else list(Kv)
        c2ws = []
        for i, m in enumerate(w2cs):
            m = np.asarray(m, dtype=np.float64)
            if m.shape == (3, 4):
                m = as_4x4(m)
            if not is_rigid(m):
                raise InputError(path, f"{w2c_key}[{i}] is not a rigid 4x4 transform")
            c2ws.append(invert_rigid(m))
    if len(c2ws) == 0 or len(c2ws) != len(Ks):
        raise InputError(path, "trajectory has no frames or mismatched camera lists")
    cams = []
    for i, (c2w, K) in enumerate(zip(c2ws, Ks)):
        c2w = as_matrix(c2w, (4, 4), path, f"frame {i} c2w")
        K = as_matrix(K, (3, 3), path, f"frame {i} K")
        if not is_rigid(c2w):
            raise InputError(path, f"frame {i} c2w is not a rigid transform (rotation not orthonormal or bad last row)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(path, f"frame {i} K has a non-positive focal length")
        cams.append(Camera(K, c2w, W, H))
    return Trajectory(cams, data.get("name", path.stem))


RELEASE_PIXEL_CENTRE = 0.5
"""WorldStereo's camera.json puts pixel centres at +0.5 (its kitchen example: cx = W/2, cy = H/2 exactly),
ours at integers: cx_ours = cx_release − 0.5."""


def is_release_camera_json(data: dict) -> bool:
    """WorldStereo's camera.json: `extrinsic` (w2c list) + `intrinsic`, no `frames`."""
    return "frames" not in data and "extrinsic" in data and "intrinsic" in data


def to_worldstereo_camera_json(traj: Trajectory) -> dict:
    """WorldStereo's camera.json layout: w2c extrinsics list, per-frame intrinsics (pixel centres at
    +0.5, as the release reads them), size."""
    def release_K(K: np.ndarray) -> list:
        K = np.array(K, np.float64)
        K[:2, 2] += RELEASE_PIXEL_CENTRE
        return K.tolist()

    return {
        "width": traj.width,
        "height": traj.height,
        "extrinsic": [c.w2c.tolist() for c in traj.cameras],
        "intrinsic": [release_K(c.K) for c in traj.cameras],
    }


def relative_to_first(traj: Trajectory) -> Trajectory:
    """The same path in the frame of its first camera (c2w'_i = c2w_0⁻¹ c2w_i): the release's
    trajectories start at the input view, which is the identity in a scene of ours."""
    w2c0 = invert_rigid(traj.cameras[0].c2w)
    return Trajectory([Camera(c.K, w2c0 @ c.c2w, c.width, c.height) for c in traj.cameras], traj.name)


def to_nerf_transforms(traj: Trajectory, image_paths: Sequence[str] | None = None) -> dict:
    """NeRF / nerfstudio transforms.json: OpenGL c2w (y up, z back), per-frame intrinsics."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV → OpenGL camera axes
    frames = []
    for i, c in enumerate(traj.cameras):
        frame = {
            "transform_matrix": (c.c2w @ flip).tolist(),
            "fl_x": float(c.K[0, 0]), "fl_y": float(c.K[1, 1]),
            # nerfstudio puts pixel centres at +0.5
            "cx": float(c.K[0, 2] + 0.5), "cy": float(c.K[1, 2] + 0.5),
            "w": c.width, "h": c.height,
        }
        if image_paths is not None:
            frame["file_path"] = image_paths[i]
        frames.append(frame)
    return {"camera_model": "OPENCV", "frames": frames}


def trajectory_from_nerf(data: dict) -> Trajectory:
    """Inverse of `to_nerf_transforms` (for round-trip tests and importing nerfstudio data)."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    cams = []
    for f in data["frames"]:
        K = np.array([[f["fl_x"], 0, f["cx"] - 0.5], [0, f["fl_y"], f["cy"] - 0.5], [0, 0, 1]])
        cams.append(Camera(K, np.asarray(f["transform_matrix"]) @ flip, int(f["w"]), int(f["h"])))
    return Trajectory(cams)
