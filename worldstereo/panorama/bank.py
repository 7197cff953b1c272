"""The 27-view perspective bank of a panorama, laid out as the WorldStereo release's pano_bank,
and its cameras.json.

Layout (facts read from the release's example pano_bank/cameras.json): 832×480 views, 120° × 90°
field of view (fx = 416 / tan 60° ≈ 240.18, fy = 240), 9 yaws 40° apart × 3 pitches (0°, ±atan ½ ≈
±26.57°), no roll, all centred at the panorama's centre. Index order: 0 = yaw 0 level, 1 = yaw 0 up,
2 = yaw 0 down, 3–10 = yaw 40°·k level (k = 1…8, turning right), 11–18 the same yaws pitched up,
19–26 pitched down. Views 0, 5 and 8 (yaw 0°, 120°, 240°) are the three level views that do not
overlap: the "middle three" that trajectories start from.

cameras.json (release format): `{"0000": {"intrinsic": K 3×3, "extrinsic": w2c 4×4}, …}` where
  * extrinsic is world→camera (w2c), OpenCV camera axes, in the release's world frame, which is
    z-up with view 0 looking along −x. Our world frame is view 0's camera frame (equirect.py), so
    w2c_release = w2c_ours · R_OURS_FROM_RELEASE (4×4), c2w_ours = R_OURS_FROM_RELEASE · c2w_release.
  * intrinsic puts pixel centres at +0.5 (the release unprojects `arange(w) + 0.5` and its cx = W/2
    is the image centre); ours are at integers, so cx_ours = cx_release − 0.5 (same for cy).
The file carries no image size; the reader takes it from the images when given, else W = 2·cx_release,
H = 2·cy_release (exact for the release's centred principal point).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from worldstereo.cameras import Camera, Trajectory, as_matrix
from worldstereo.errors import InputError
from worldstereo.geometry import invert_rigid, is_rigid
from worldstereo.io.dataclass_json import read_json

# x_ours = R x_release: release +y (right of view 0) → our +x, release +z (up) → our −y,
# release −x (view 0's gaze) → our +z. Equal to the rotation of the release's view-0 w2c.
R_OURS_FROM_RELEASE = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
MIDDLE_VIEWS = (0, 5, 8)


@dataclass(frozen=True)
class BankLayout:
    """Size, field of view and directions of the perspective bank (defaults = the release's)."""

    width: int = 832
    height: int = 480
    hfov_deg: float = 120.0
    """Horizontal field of view, edge to edge."""
    vfov_deg: float = 90.0
    """Vertical field of view, edge to edge."""
    yaws: int = 9
    """Yaws 360°/yaws apart, the first at the panorama's centre column."""
    pitch_deg: float = math.degrees(math.atan(0.5))
    """Elevation of the upper and lower rings (the release: atan ½ ≈ 26.57°)."""

    def K(self) -> np.ndarray:
        fx = 0.5 * self.width / math.tan(math.radians(self.hfov_deg) / 2)
        fy = 0.5 * self.height / math.tan(math.radians(self.vfov_deg) / 2)
        return np.array([[fx, 0.0, (self.width - 1) / 2], [0.0, fy, (self.height - 1) / 2], [0.0, 0.0, 1.0]])

    def directions_deg(self) -> list[tuple[float, float]]:
        """(yaw, pitch) per view in the release's index order (see module docstring)."""
        step = 360.0 / self.yaws
        p = self.pitch_deg
        first = [(0.0, 0.0), (0.0, p), (0.0, -p)]
        rest = [(step * k, pitch) for pitch in (0.0, p, -p) for k in range(1, self.yaws)]
        return first + rest


RELEASE_LAYOUT = BankLayout()


def yaw_pitch_c2w(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """c2w [4, 4] of a camera at the origin turned `yaw` right (about world −y) then `pitch` up, no roll."""
    psi, th = math.radians(yaw_deg), math.radians(pitch_deg)
    x = np.array([math.cos(psi), 0.0, -math.sin(psi)])
    z = np.array([math.cos(th) * math.sin(psi), -math.sin(th), math.cos(th) * math.cos(psi)])
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = x, np.cross(z, x), z
    return c2w


def bank_cameras(layout: BankLayout = RELEASE_LAYOUT) -> list[Camera]:
    """The bank's cameras in our world frame, index order as the release's cameras.json."""
    K = layout.K()
    return [Camera(K.copy(), yaw_pitch_c2w(y, p), layout.width, layout.height) for y, p in layout.directions_deg()]


# --------------------------------------------------------------------------- release conventions


def _embed(R: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    return T


def release_w2c(c2w: np.ndarray) -> np.ndarray:
    """Our c2w → the release's extrinsic (w2c in its z-up world)."""
    return invert_rigid(c2w) @ _embed(R_OURS_FROM_RELEASE)


def c2w_from_release(w2c_release: np.ndarray) -> np.ndarray:
    """The release's extrinsic (w2c, z-up world) → our c2w."""
    return _embed(R_OURS_FROM_RELEASE) @ invert_rigid(w2c_release)


def release_K(K: np.ndarray) -> np.ndarray:
    """Our K (pixel centres at integers) → the release's (centres at +0.5)."""
    out = np.array(K, np.float64).copy()
    out[:2, 2] += 0.5
    return out


def K_from_release(K_release: np.ndarray) -> np.ndarray:
    out = np.array(K_release, np.float64).copy()
    out[:2, 2] -= 0.5
    return out


def bank_cameras_dict(cameras: Sequence[Camera]) -> dict:
    """cameras.json content for `cameras` (our frame/convention in, the release's out)."""
    return {f"{i:04d}": {"intrinsic": release_K(c.K).tolist(), "extrinsic": release_w2c(c.c2w).tolist()}
            for i, c in enumerate(cameras)}


def write_bank_cameras(path: str | Path, cameras: Sequence[Camera]) -> None:
    from worldstereo.io.atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(bank_cameras_dict(cameras)))


def read_bank_cameras(path: str | Path, size: tuple[int, int] | None = None) -> list[Camera]:
    """Read a release-style pano_bank/cameras.json into our cameras (frame and K converted).

    `size` = (width, height) of the views; without it, each view's size is 2·(cx, cy) of its
    release intrinsic. Keys are read in sorted order ("0000", "0001", …).
    """
    path = Path(path)
    data = read_json(path, "cameras.json not found")
    if not isinstance(data, dict) or not data:
        raise InputError(path, "expected a non-empty object {\"0000\": {\"intrinsic\", \"extrinsic\"}, ...}")
    cams = []
    for key in sorted(data):
        entry = data[key]
        if not isinstance(entry, dict) or "intrinsic" not in entry or "extrinsic" not in entry:
            raise InputError(path, f"view {key!r} lacks 'intrinsic' or 'extrinsic'")
        K_rel = as_matrix(entry["intrinsic"], (3, 3), path, f"view {key} intrinsic")
        w2c_rel = as_matrix(entry["extrinsic"], (4, 4), path, f"view {key} extrinsic")
        if not is_rigid(w2c_rel):
            raise InputError(path, f"view {key} extrinsic is not a rigid world-to-camera transform")
        if K_rel[0, 0] <= 0 or K_rel[1, 1] <= 0:
            raise InputError(path, f"view {key} intrinsic has a non-positive focal length")
        w, h = size if size is not None else (int(round(2 * K_rel[0, 2])), int(round(2 * K_rel[1, 2])))
        cams.append(Camera(K_from_release(K_rel), c2w_from_release(w2c_rel), w, h))
    return cams


def to_release_camera_json(traj: Trajectory) -> dict:
    """A trajectory as the release's per-view camera.json (w2c in its z-up world, its K convention)."""
    return {"extrinsic": [release_w2c(c.c2w).tolist() for c in traj.cameras],
            "intrinsic": [release_K(c.K).tolist() for c in traj.cameras],
            "width": traj.width, "height": traj.height}
