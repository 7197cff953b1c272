"""Frames for a reconstruction: a video + trajectory (perspective or equirectangular) or a scene folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from worldstereo.cameras import Camera, Trajectory
from worldstereo.errors import InputError
from worldstereo.reconstruction.types import Frames

PANO_FACE_YAWS_DEG = (0.0, 90.0, 180.0, 270.0)  # horizontal 90° views cut from each panorama frame


def even_pick(n: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over 0..n−1 (all of them when n ≤ count)."""
    return np.arange(n) if n <= count else np.unique(np.linspace(0, n - 1, count).round().astype(int))


def working_scale(width: int, height: int, resolution: int) -> float:
    """Downscale factor so the long side is at most `resolution` (never upscales)."""
    return min(1.0, resolution / max(width, height))


def resize_frames(images: list[np.ndarray], cams: list[Camera], resolution: int) -> Frames:
    """Frames at the working size (long side ≤ resolution) with intrinsics scaled to match."""
    H, W = images[0].shape[:2]
    s = working_scale(W, H, resolution)
    if s < 1.0:
        w, h = max(8, int(round(W * s))), max(8, int(round(H * s)))
        images = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images]
        cams = [c.scaled(w / W, h / H) for c in cams]
    return Frames(np.stack(images).astype(np.uint8), cams)


def frames_from_video(video_path: str | Path, trajectory: Trajectory, resolution: int, max_frames: int) -> Frames:
    """Perspective video frames paired 1:1 with the trajectory's cameras, K rescaled to the video size."""
    from worldstereo.io.video import read_video

    images = read_video(video_path)
    if len(images) != len(trajectory):
        raise InputError(video_path, f"video has {len(images)} frames but the trajectory has {len(trajectory)} cameras")
    H, W = images[0].shape[:2]
    sx, sy = W / trajectory.width, H / trajectory.height
    if abs(sx - sy) > 0.02 * max(sx, sy):
        raise InputError(video_path, f"video size {W}x{H} does not match the trajectory's aspect "
                                     f"{trajectory.width}x{trajectory.height}")
    cams = [Camera(c.scaled(sx, sy).K, c.c2w, W, H) for c in trajectory.cameras]
    pick = even_pick(len(images), max_frames)
    return resize_frames([images[i] for i in pick], [cams[i] for i in pick], resolution)


def equirect_to_face(pano: np.ndarray, yaw_deg: float, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 90° square pinhole view [side, side, 3] looking at `yaw_deg` about the camera's y (down) axis,
    cut from an equirectangular image (column centre = +z, longitude θ = atan2(x, z), latitude
    from asin(y), OpenCV axes). Returns (image, K [3, 3], R_face [3, 3]: face axes → camera axes)."""
    f = side / 2.0
    K = np.array([[f, 0, (side - 1) / 2], [0, f, (side - 1) / 2], [0, 0, 1.0]])
    a = np.radians(yaw_deg)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    v, u = np.mgrid[0:side, 0:side].astype(np.float64)
    d = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones_like(u)], -1) @ R.T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    Hp, Wp = pano.shape[:2]
    lon, lat = np.arctan2(d[..., 0], d[..., 2]), np.arcsin(np.clip(d[..., 1], -1, 1))
    mx = ((lon / (2 * np.pi) + 0.5) * Wp - 0.5).astype(np.float32)
    my = ((lat / np.pi + 0.5) * Hp - 0.5).astype(np.float32)
    img = cv2.remap(pano, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return img, K, R


def frames_from_panorama_video(video_path: str | Path, trajectory: Trajectory, resolution: int,
                               max_frames: int) -> Frames:
    """Each equirectangular frame → 4 horizontal 90° views (c2w = frame c2w · face rotation); the
    trajectory's K is not used. `group` keeps one sweep sequence per face direction."""
    from worldstereo.io.video import read_video

    panos = read_video(video_path)
    if len(panos) != len(trajectory):
        raise InputError(video_path, f"video has {len(panos)} frames but the trajectory has {len(trajectory)} cameras")
    Hp, Wp = panos[0].shape[:2]
    if abs(Wp / Hp - 2.0) > 0.05:
        raise InputError(video_path, f"panoramic_input needs equirectangular 2:1 frames, got {Wp}x{Hp}")
    side = int(min(Hp // 2, resolution // 2)) // 2 * 2
    pick = even_pick(len(panos), max(1, max_frames // len(PANO_FACE_YAWS_DEG)))
    images, cams, group = [], [], []
    for g, yaw in enumerate(PANO_FACE_YAWS_DEG):
        for i in pick:
            img, K, R = equirect_to_face(panos[i], yaw, side)
            c2w = trajectory.cameras[i].c2w.copy()
            c2w[:3, :3] = c2w[:3, :3] @ R
            images.append(img)
            cams.append(Camera(K, c2w, side, side))
            group.append(g)
    return Frames(np.stack(images), cams, group=np.array(group))


def frames_from_scene(scene_root: str | Path, resolution: int, max_frames: int) -> Frames:
    """A scene folder of ours (or video_to_world / DA3): exports/npz/results.npz frames with depth."""
    from worldstereo.io.results import load_results

    npz = Path(scene_root) / "exports" / "npz" / "results.npz"
    if not npz.exists():
        raise InputError(scene_root, "not a scene folder with exports/npz/results.npz (run run_pipeline.py first)")
    r = load_results(npz)
    pick = even_pick(len(r), max_frames)
    r = r.subset(pick)
    N, H, W = r.depth.shape
    c2w = r.c2w()
    cams = [Camera(r.K[i].astype(np.float64), c2w[i], W, H) for i in range(N)]
    frames = resize_frames(list(r.image), cams, resolution)
    h, w = frames.images.shape[1:3]
    depth = r.depth if (h, w) == (H, W) else np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)
                                                       for d in r.depth])
    frames.depth_m = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    return frames
