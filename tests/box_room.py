"""A tiny analytic test scene: the inside of a textured box room, ray cast exactly (no project code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOM_LO = np.array([-2.0, -1.5, -1.5])
ROOM_HI = np.array([2.0, 1.5, 2.0])


def albedo(p: np.ndarray) -> np.ndarray:
    """Procedural colour [N, 3] uint8 of surface points [N, 3]: blobs + stripes at several scales."""
    s = (np.sin(7.1 * p[:, 0] + 2.3 * np.sin(5.3 * p[:, 1])) + np.sin(6.7 * p[:, 1] + 3.1 * p[:, 2])
         + np.sin(5.9 * p[:, 2] + 1.7 * p[:, 0]) + 0.7 * np.sin(19.0 * (p[:, 0] + p[:, 1] + p[:, 2])))
    c = np.stack([0.5 + 0.18 * s, 0.5 + 0.15 * np.sin(4.0 * s), 0.5 - 0.12 * s], 1)
    return np.clip(c * 255, 0, 255).astype(np.uint8)


def box_distance(p: np.ndarray) -> np.ndarray:
    """Unsigned distance [N] of points to the room's walls (exact inside the room)."""
    inside = np.minimum(p - ROOM_LO, ROOM_HI - p).min(axis=1)
    outside = np.linalg.norm(np.maximum(np.maximum(ROOM_LO - p, p - ROOM_HI), 0), axis=1)
    return np.where(inside >= 0, inside, outside)


def look_c2w(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV c2w looking from eye at target with world +y down."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    c2w[:3, 3] = eye
    return c2w


def cameras(n: int, width: int, height: int, f: float) -> tuple[np.ndarray, list[np.ndarray]]:
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    poses = []
    for t in np.linspace(-1, 1, n):
        eye = np.array([0.45 * t, 0.1 * np.sin(np.pi * t), -0.6])
        poses.append(look_c2w(eye, np.array([0.25 * t, 0.2, 2.0])))
    return K, poses


def render(K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB [H, W, 3] uint8 and z-depth [H, W] of the room from inside."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T
    o = c2w[:3, 3]
    with np.errstate(divide="ignore"):
        t = np.where(d > 0, (ROOM_HI - o) / d, (ROOM_LO - o) / d)
    t = np.where(np.isfinite(t), t, np.inf).min(axis=1)
    p = o + t[:, None] * d
    return albedo(p).reshape(height, width, 3), (t * d_cam[:, 2]).reshape(height, width)


def write_inputs(folder: Path, n: int = 10, width: int = 96, height: int = 72, f: float = 70.0) -> dict:
    """video.mp4 (imageio) + trajectory.json (ours) of the room; returns the frames and cameras."""
    import imageio.v2 as imageio

    K, poses = cameras(n, width, height, f)
    frames, depths = zip(*(render(K, c, width, height) for c in poses))
    folder.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(folder / "video.mp4", list(frames), fps=10, codec="libx264", quality=9, macro_block_size=1)
    traj = {"width": width, "height": height, "frames": [{"c2w": c.tolist(), "K": K.tolist()} for c in poses]}
    (folder / "trajectory.json").write_text(json.dumps(traj))
    return {"K": K, "c2w": poses, "images": np.stack(frames), "depth": np.stack(depths)}


def _cast(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter [N] where rays o + t·d [N, 3] from inside leave the room."""
    with np.errstate(divide="ignore"):
        t = np.where(d > 0, (ROOM_HI - o) / d, (ROOM_LO - o) / d)
    return np.where(np.isfinite(t), t, np.inf).min(axis=1)


def render_equirect(c2w: np.ndarray, width: int, height: int) -> np.ndarray:
    """Equirectangular RGB [H, W, 3] from the camera centre: longitude atan2(x, z) across the columns
    (centre = +z), latitude asin(y) down the rows (camera axes, OpenCV)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    lon = ((u + 0.5) / width - 0.5) * 2 * np.pi
    lat = ((v + 0.5) / height - 0.5) * np.pi
    d_cam = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T
    p = c2w[:3, 3] + _cast(c2w[:3, 3], d)[:, None] * d
    return albedo(p).reshape(height, width, 3)


def write_panorama_video(path: Path, poses: list[np.ndarray], width: int = 192, height: int = 96) -> None:
    import imageio.v2 as imageio

    imageio.mimwrite(path, [render_equirect(c, width, height) for c in poses], fps=10, codec="libx264",
                     quality=9, macro_block_size=1)
