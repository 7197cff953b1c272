"""The panoramic 3D cache: every equirect pixel with a distance becomes a point, from all
directions at once, without flying pixels at depth edges and without crowding at the poles."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from worldstereo.panorama.equirect import angles_to_dirs, pixel_solid_angle, pixel_to_angles

if TYPE_CHECKING:
    from worldstereo.memory.cache import PointCache


def equirect_depth_edges(distance_m: np.ndarray, rel_thresh: float) -> np.ndarray:
    """[H, W] bool: geometry.depth_discontinuities on the distance map with the seam closed (column 0
    and column W − 1 are neighbours). Across the poles no neighbour is checked."""
    # memory.cache imports the point renderer (torch): imported here, so that reading a
    # panorama or cutting its views stays light
    from worldstereo.geometry import depth_discontinuities

    padded = np.concatenate([distance_m[:, -1:], distance_m, distance_m[:, :1]], axis=1)
    return depth_discontinuities(padded, rel_thresh)[:, 1:-1]


def solid_angle_keep(height: int, width: int) -> np.ndarray:
    """[H, W] bool: which pixels to keep so points are about evenly spread over the sphere.

    Row v keeps n_v = max(1, round(W · Ω_v / Ω_equator)) columns (Ω_v: the row's pixel solid
    angle, ∝ cos φ), evenly spaced, each row's pattern offset by the golden ratio so the kept
    columns do not line up into meridians. The kept points are then ≈ π/H apart both ways.
    """
    ratio = pixel_solid_angle(height, width)
    ratio = ratio / ratio.max()
    keep = np.zeros((height, width), bool)
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for v in range(height):
        n = max(1, int(round(width * ratio[v])))
        cols = np.floor((np.arange(n) + (v * golden) % 1.0) * width / n).astype(int) % width
        keep[v, cols] = True
    return keep


def panorama_point_mask(distance_m: np.ndarray, edge_rel_thresh: float | None = 0.04,
                        even_density: bool = True) -> np.ndarray:
    """[H, W] bool: pixels that become cache points (valid distance, not at an edge, kept by
    the solid-angle subsampling)."""
    valid = np.isfinite(distance_m) & (distance_m > 0)
    if edge_rel_thresh is not None:
        valid &= ~equirect_depth_edges(distance_m, edge_rel_thresh)
    if even_density:
        valid &= solid_angle_keep(*distance_m.shape)
    return valid


FOOTPRINT_SCALE = 1.5
"""A panoramic point's splat footprint (`size`) is this × its spacing distance · π/H. The renderer
sizes a splat as if the point faced the camera on its axis; seen by a bank view at θ off its
axis, panoramic points lie 1/cos θ farther apart than that on screen (up to 2× at a 120° view's
sides), and at 1.0 the renders of the panoramic cache showed cracks (3.8 % holes in bank view 0
of the synthetic room, 0.1 % at 1.5) that the hole filler then filled with wrong depth."""


def cache_height(pano_height: int, view_fx: float) -> int:
    """Equirect height the panoramic cache is built at: the panorama's, or fewer rows when its
    pixels are finer than the bank views' at their centre (1/fx radians). Kept points lie π/H
    apart, so H = π·fx matches the views' pixel pitch; a denser cache only hides its own points in
    every render while each render, fusion and snapshot pays for all of them (at the defaults,
    2048 × 1024 with 832 × 480 views of fx 240: H 754, 0.7 M points instead of 1.3 M)."""
    return int(min(pano_height, max(8, round(math.pi * view_fx))))


def points_from_panorama(rgb: np.ndarray, distance_m: np.ndarray, conf: float = 1.0, step: int = 0,
                         frame: int = 0, edge_rel_thresh: float | None = 0.04,
                         even_density: bool = True, footprint_scale: float = FOOTPRINT_SCALE) -> "PointCache":
    """Equirect colour [H, 2H, 3] uint8 + distance along each ray [H, 2H] (metres, 0 / inf =
    unknown) → cache points in the panorama's world frame: X = distance · d(u, v).

    `size` (the world footprint used for splatting) is footprint_scale × distance · π/H, π/H
    being the angular spacing of the kept points (see FOOTPRINT_SCALE); `frame` is recorded for
    every point (the pipeline uses 0 for the input).
    """
    from worldstereo.memory.cache import PointCache

    H, W = distance_m.shape
    keep = panorama_point_mask(distance_m, edge_rel_thresh, even_density)
    vs, us = np.nonzero(keep)
    dist = distance_m[vs, us].astype(np.float64)
    rays = angles_to_dirs(*pixel_to_angles(us, vs, W, H))  # [N, 3] unit
    n = len(vs)
    return PointCache((rays * dist[:, None]).astype(np.float32), rgb[vs, us].astype(np.uint8),
                      np.full(n, conf, np.float32), (footprint_scale * dist * math.pi / H).astype(np.float32),
                      np.full(n, step, np.int16), np.full(n, frame, np.int32))
