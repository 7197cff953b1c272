"""Equirectangular conventions: pixel ↔ longitude/latitude ↔ ray direction in the panorama's world frame.

World frame (the one every panoramic scene uses): origin at the panorama's centre of projection,
OpenCV axes — x right, y down, z forward — where "forward" is the panorama's centre column on the
horizon. So world up is −y, as for photo scenes (cameras.WORLD_DOWN), and bank view 0 (the camera
looking at the centre column, see bank.py) has c2w = identity.

Angles: longitude θ ∈ [−π, π) turns from +z towards +x (to the right, seen from inside);
latitude φ ∈ [−π/2, π/2] is positive upwards (towards −y). The unit ray is

    d(θ, φ) = (cos φ · sin θ,  −sin φ,  cos φ · cos θ).

Pixels: an H × W image with W = 2H, pixel centres at integers (as for every image in the project):

    θ = 2π · ((u + 0.5) / W − 0.5),      φ = π · (0.5 − (v + 0.5) / H).

So the left image edge (u = −0.5) and the right edge (u = W − 0.5) are the seam at θ = ±180°
(looking along −z); +z (θ = 0) lies on the edge between columns W/2 − 1 and W/2; row 0 is next to
the zenith (up, −y) and row H − 1 next to the nadir. Seams wrap: column u and u ± W are the same
direction; across a pole, row −1 − v of column u is row v of column u + W/2.
"""

from __future__ import annotations

import math

import numpy as np


def pixel_to_angles(u: np.ndarray, v: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Equirect pixel coordinates (any shape) → (longitude θ, latitude φ) in radians."""
    theta = 2.0 * math.pi * ((np.asarray(u, np.float64) + 0.5) / width - 0.5)
    phi = math.pi * (0.5 - (np.asarray(v, np.float64) + 0.5) / height)
    return theta, phi


def angles_to_pixel(theta: np.ndarray, phi: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(θ, φ) radians → equirect pixel coordinates (u, v); u is not wrapped (θ = ±π gives u = W − 0.5 / −0.5)."""
    u = (np.asarray(theta) / (2.0 * math.pi) + 0.5) * width - 0.5
    v = (0.5 - np.asarray(phi) / math.pi) * height - 0.5
    return u, v


def angles_to_dirs(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(θ, φ) → unit ray directions [..., 3] in the world frame (OpenCV axes)."""
    c = np.cos(phi)
    return np.stack([c * np.sin(theta), -np.sin(phi), c * np.cos(theta)], axis=-1)


def dirs_to_angles(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions [..., 3] (any length > 0) → (θ, φ). The poles get θ = atan2(0, 0) = 0."""
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    return np.arctan2(x, z), np.arctan2(-y, np.hypot(x, z))


def equirect_rays(height: int, width: int) -> np.ndarray:
    """Unit ray of every pixel centre, [H, W, 3] float64."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return angles_to_dirs(*pixel_to_angles(u, v, width, height))


def dirs_to_pixel(dirs: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Directions [..., 3] → equirect pixel coordinates (u, v), u wrapped into [−0.5, W − 0.5)."""
    u, v = angles_to_pixel(*dirs_to_angles(dirs), width, height)
    return np.mod(u + 0.5, width) - 0.5, v


def points_to_pixel(pts_world: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points [N, 3] → equirect (u, v) and distance from the centre (the panoramic depth)."""
    u, v = dirs_to_pixel(pts_world, width, height)
    return u, v, np.linalg.norm(pts_world, axis=-1)


def pixel_solid_angle(height: int, width: int) -> np.ndarray:
    """Solid angle (steradians) of each row's pixels, [H]: Δθ · (sin φ_top − sin φ_bottom). Sums to 4π over the image."""
    edges = math.pi * (0.5 - np.arange(height + 1) / height)  # latitude of row edges, top to bottom
    return (2.0 * math.pi / width) * (np.sin(edges[:-1]) - np.sin(edges[1:]))


def is_equirect_shape(height: int, width: int) -> bool:
    """2:1 within one pixel of rounding (e.g. 2048×1024, or 2049×1024 from a careless crop)."""
    return height > 0 and abs(width - 2 * height) <= 1


class EquirectCamera:
    """The panorama as an observer for free-space checks: centre of projection at the world origin,
    every direction seen, its depth the ray-distance map [H, W] (memory.cache.violates_free_space)."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height

    def free_space(self, xyz: np.ndarray, distance_m: np.ndarray, margin: float) -> np.ndarray:
        """[N] bool: points nearer to the centre than the distance the panorama saw along their ray
        (by more than the relative margin), i.e. in space the panorama saw through. Unknown
        distance (0) marks nothing."""
        u, v, r = points_to_pixel(np.asarray(xyz, np.float64), self.width, self.height)
        ui = np.mod(np.round(u).astype(np.int64), self.width)
        vi = np.clip(np.round(v).astype(np.int64), 0, self.height - 1)
        d = distance_m[vi, ui]
        return (d > 0) & np.isfinite(d) & (r < d * (1.0 - margin))


def nearest_surface(distance_m: np.ndarray) -> np.ndarray:
    """[H, W] the smallest known distance among each pixel's 3 × 3 neighbours (seam wrapped, 0 =
    unknown where none is known): a point on a silhouette that rounds to the background pixel
    beside it is then not taken for a point in front of that background."""
    import cv2

    d = np.where(np.isfinite(distance_m) & (distance_m > 0), distance_m, np.inf).astype(np.float32)
    padded = np.concatenate([d[:, -1:], d, d[:, :1]], axis=1)  # the seam wraps
    out = cv2.erode(padded, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)[:, 1:-1]
    return np.where(np.isfinite(out), out, 0.0).astype(np.float32)
