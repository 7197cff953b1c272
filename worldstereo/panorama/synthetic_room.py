"""A synthetic panorama with exact depth: an analytic ray caster of a box-shaped room with a few
boxes in it (for tests and the panorama benchmark). World frame and axes as in equirect.py
(y down); the panorama's centre is the origin."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.panorama.equirect import equirect_rays


@dataclass(frozen=True)
class Box:
    """An axis-aligned box [lo, hi] (metres) with a base colour (0..1)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float] = (0.8, 0.3, 0.2)


@dataclass(frozen=True)
class Room:
    """The room's inside is the box [lo, hi]; floor at y = hi[1] (y points down), ceiling at lo[1]."""

    lo: tuple[float, float, float] = (-3.0, -1.4, -2.6)
    hi: tuple[float, float, float] = (3.6, 1.6, 4.2)
    boxes: tuple[Box, ...] = field(default_factory=lambda: (
        Box((0.5, 0.7, 1.6), (1.5, 1.6, 2.6), (0.85, 0.35, 0.2)),
        Box((-2.1, 0.2, -1.6), (-1.3, 1.6, -0.7), (0.2, 0.45, 0.85)),
    ))
    texture_scale: float = 1.0
    """Spatial frequency multiplier of the wall texture (1: features ≈ 0.5–1 m, smooth at 2K)."""


def raycast(room: Room, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit along each ray: distance t [N] (in units of |dir|) and surface id [N]
    (0–5: room faces −x, +x, −y (ceiling), +y (floor), −z, +z; 6 + k: box k). Origins must lie
    inside the room and outside the boxes."""
    o, d = np.asarray(origins, np.float64), np.asarray(dirs, np.float64)
    lo, hi = np.array(room.lo), np.array(room.hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_axis = np.where(d > 0, (hi - o) / d, np.where(d < 0, (lo - o) / d, np.inf))  # [N, 3] exit per axis
        axis = np.argmin(t_axis, axis=1)
        t = t_axis[np.arange(len(o)), axis]
        surf = 2 * axis + (d[np.arange(len(o)), axis] > 0)
        for k, box in enumerate(room.boxes):
            t1 = (np.array(box.lo) - o) / d
            t2 = (np.array(box.hi) - o) / d
            t_near = np.nanmax(np.minimum(t1, t2), axis=1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (t_near <= t_far) & (t_near > 0) & (t_near < t)
            t = np.where(hit, t_near, t)
            surf = np.where(hit, 6 + k, surf)
    return t, surf


def shade(room: Room, pts: np.ndarray, surf: np.ndarray) -> np.ndarray:
    """Smooth colour [N, 3] in 0..1: a per-surface base tint times low-frequency waves in 3D."""
    base = np.array([[0.75, 0.7, 0.6], [0.65, 0.72, 0.6], [0.9, 0.9, 0.85], [0.55, 0.45, 0.35],
                     [0.6, 0.65, 0.75], [0.75, 0.6, 0.65]] + [list(b.color) for b in room.boxes])
    s = room.texture_scale
    x, y, z = pts[:, 0] * s, pts[:, 1] * s, pts[:, 2] * s
    wave = np.stack([np.sin(2.1 * x + 1.3 * z) * np.cos(1.7 * y),
                     np.sin(1.9 * z - 2.3 * y + 0.5),
                     np.cos(2.7 * x - 1.1 * y + 1.9 * z)], 1)
    return np.clip(base[surf] * (0.75 + 0.2 * wave), 0.0, 1.0)


def render_panorama(room: Room, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Equirect [H, 2H, 3] uint8 and exact distance along each pixel-centre ray [H, 2H] float32."""
    rays = equirect_rays(height, 2 * height).reshape(-1, 3)
    t, surf = raycast(room, np.zeros_like(rays), rays)
    rgb = shade(room, rays * t[:, None], surf)
    return (np.round(rgb * 255).astype(np.uint8).reshape(height, 2 * height, 3),
            t.astype(np.float32).reshape(height, 2 * height))


def render_view(room: Room, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """A perspective view [h, w, 3] uint8 and its exact z-depth [h, w] float32, straight from the
    ray caster (pixel centres at integers, OpenCV camera axes)."""
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    ray_cam = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], (v - cam.K[1, 2]) / cam.K[1, 1], np.ones_like(u)], -1)
    rays = ray_cam.reshape(-1, 3) @ cam.c2w[:3, :3].T
    origins = np.broadcast_to(cam.c2w[:3, 3], rays.shape)
    t, surf = raycast(room, origins, rays)  # t in units of the z = 1 ray: exactly the z-depth
    rgb = shade(room, origins + rays * t[:, None], surf)
    return (np.round(rgb * 255).astype(np.uint8).reshape(cam.height, cam.width, 3),
            t.astype(np.float32).reshape(cam.height, cam.width))
