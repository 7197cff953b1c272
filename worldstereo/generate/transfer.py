"""Pointmap correspondence: carry colour from a reference view into a target view, with visibility."""

from __future__ import annotations

import cv2
import numpy as np

from worldstereo.cameras import Camera
from worldstereo.geometry import project_points, unproject_depth


def transfer_colour(target: Camera, target_depth: np.ndarray, target_valid: np.ndarray, ref: Camera,
                    ref_rgb: np.ndarray, ref_depth: np.ndarray, depth_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample the reference image at each target pixel's 3D point.

    The target pointmap (world points from the target depth) projects into the reference; a pixel
    is visible there when the reference depth at that spot agrees within a relative `depth_tol`
    (otherwise something occludes it in the reference). Returns (colour [H, W, 3] uint8,
    visible [H, W] bool).
    """
    H, W = target_depth.shape
    pts = unproject_depth(np.where(target_valid, target_depth, 0.0), target.K, target.c2w).reshape(-1, 3)
    uv, z = project_points(np.nan_to_num(pts), ref.K, ref.w2c)
    map_x = uv[:, 0].reshape(H, W).astype(np.float32)
    map_y = uv[:, 1].reshape(H, W).astype(np.float32)
    colour = cv2.remap(ref_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # nearest for depth: bilinear would blend across occlusion edges and fail the visibility test
    ref_z = cv2.remap(np.nan_to_num(ref_depth, posinf=0.0).astype(np.float32), map_x, map_y, cv2.INTER_NEAREST,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    z = z.reshape(H, W)
    inside = (map_x >= 0) & (map_x <= ref.width - 1) & (map_y >= 0) & (map_y <= ref.height - 1)
    visible = target_valid & inside & (z > 0) & (ref_z > 0) & (np.abs(ref_z - z) <= depth_tol * z)
    return colour, visible
