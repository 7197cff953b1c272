"""The planar depth prior: used only when no depth file or model is given (a guess, said loudly).

Model: a floor plane below the camera and a fronto-parallel back wall. A pixel's depth is the
nearer of the two hits along its ray: floor z = h / ((v − cy)/fy) for rays below the horizon,
wall z = 1.5 · d_med. With h = 0.5 · d_med · tan(vfov/2) the floor meets the wall near the bottom
third of the image, a common layout for photos of scenes.
"""

from __future__ import annotations

import math

import numpy as np


def planar_prior(height: int, width: int, K: np.ndarray, median_depth_m: float) -> np.ndarray:
    """Depth [H, W] float32 of the floor + back-wall layout, then rescaled to the given median."""
    v = np.arange(height, dtype=np.float64)[:, None] * np.ones((1, width))
    ray_y = (v - K[1, 2]) / K[1, 1]
    vfov_half = math.atan(0.5 * height / K[1, 1])
    h = 0.5 * median_depth_m * math.tan(vfov_half)
    wall = 1.5 * median_depth_m
    with np.errstate(divide="ignore"):
        floor = np.where(ray_y > 1e-6, h / np.maximum(ray_y, 1e-6), np.inf)
    depth = np.minimum(floor, wall)
    depth *= median_depth_m / np.median(depth)
    return depth.astype(np.float32)
