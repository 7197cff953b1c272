"""A panorama's distance map from a perspective depth model: the model runs on views around the
centre (the bank's 27 and one at each pole), each view's z-depth becomes distance along its rays,
the views' scales are aligned to each other on their overlaps, and the views are fused into one
equirect map (docs/panorama.md, "Depth from a model").

A relative model scales each view on its own (its median set to the same value), so neighbouring
views disagree by a factor per view. One log-scale per view is fitted so that, on the equirect
pixels two views both see, their distances agree (the median log ratio of each overlapping pair,
least squares over all pairs); the fused map is the feathered mean of the aligned log distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.panorama.bank import RELEASE_LAYOUT, BankLayout, bank_cameras, yaw_pitch_c2w
from worldstereo.panorama.equirect import equirect_rays
from worldstereo.panorama.views import _covered_box, camera_rays, equirect_to_view

POLE_FOV_DEG = 100.0
"""Field of view of the two views at the poles: the bank reaches ±71.6° latitude, so a pole view
needs 2 × 18.4° to close its cap; 100° leaves a wide overlap with the bank's outer rings to align on."""
ALIGN_HEIGHT = 256
"""Equirect height at which the views' overlaps are compared (statistics only; the fused map has
the panorama's own size)."""


@dataclass
class FusedDistance:
    """One equirect distance map from depth-model views, and how well the views agreed."""

    distance_m: np.ndarray  # [H, 2H] float32, 0 where no view sees
    scales: np.ndarray  # [V] factor applied to each view's distances
    pairs: int  # overlapping view pairs used
    offset_before: float  # median over pairs of |median(log d_i − log d_j)|: scale disagreement, before
    offset_after: float  # the same after alignment (0.01 ≈ 1 % relative)
    spread_after: float  # median over pairs of median |log d_i − log d_j| after alignment: per-pixel disagreement


def depth_cameras(layout: BankLayout = RELEASE_LAYOUT) -> list[Camera]:
    """The bank's cameras, then a square view looking straight up and one straight down."""
    side = layout.height
    f = 0.5 * side / math.tan(math.radians(POLE_FOV_DEG) / 2)
    K = np.array([[f, 0.0, (side - 1) / 2], [0.0, f, (side - 1) / 2], [0.0, 0.0, 1.0]])
    poles = [Camera(K.copy(), yaw_pitch_c2w(0.0, p), side, side) for p in (90.0, -90.0)]
    return bank_cameras(layout) + poles


def _lookup(cam: Camera, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat equirect pixel indices [M], the view pixel (row, col) nearest to each [M, 2], feather
    weight [M] in (0, 1]) of the equirect pixels `cam` sees (same weight as views_to_equirect)."""
    W = 2 * height
    roll, rows = _covered_box(cam, W, height)
    cols = np.mod(np.arange(W) - roll, W)
    rays = equirect_rays(height, W)[rows][:, cols]
    d = np.einsum("ji,hwj->hwi", cam.c2w[:3, :3], rays)
    z = d[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = cam.K[0, 0] * d[..., 0] / z + cam.K[0, 2]
        mv = cam.K[1, 1] * d[..., 1] / z + cam.K[1, 2]
    nx = (mu - (cam.width - 1) / 2) / (cam.width / 2)
    ny = (mv - (cam.height - 1) / 2) / (cam.height / 2)
    w = np.where(z > 1e-6, np.clip(np.minimum(1 - np.abs(nx), 1 - np.abs(ny)), 0, 1), 0.0)
    r, c = np.nonzero(w > 0)
    flat = (np.arange(height)[rows][r]) * W + cols[c]
    px = np.stack([np.clip(np.round(mv[r, c]), 0, cam.height - 1), np.clip(np.round(mu[r, c]), 0, cam.width - 1)], 1)
    return flat, px.astype(np.int64), w[r, c]


def _log_distance_samples(distances: Sequence[np.ndarray], cameras: Sequence[Camera], height: int):
    """Per view: (flat equirect indices, log distance, weight) of its valid samples at `height`."""
    out = []
    for dist, cam in zip(distances, cameras):
        flat, px, w = _lookup(cam, height)
        d = dist[px[:, 0], px[:, 1]].astype(np.float64)
        ok = np.isfinite(d) & (d > 0)
        out.append((flat[ok], np.log(d[ok]), w[ok]))
    return out


def _pair_offsets(samples, n_pixels: int, min_overlap: int) -> list[tuple[int, int, float, int, np.ndarray]]:
    """(i, j, median log d_i − log d_j, overlap count, the differences) of every overlapping pair."""
    grids = []
    for flat, logd, _ in samples:
        g = np.full(n_pixels, np.nan)
        g[flat] = logd
        grids.append(g)
    pairs = []
    for i in range(len(grids)):
        for j in range(i + 1, len(grids)):
            both = np.isfinite(grids[i]) & np.isfinite(grids[j])
            if both.sum() >= min_overlap:
                diff = grids[i][both] - grids[j][both]
                pairs.append((i, j, float(np.median(diff)), int(both.sum()), diff))
    return pairs


def _solve_log_scales(pairs, n_views: int) -> np.ndarray:
    """Log-scales x [V] with x_i − x_j ≈ −offset_ij (weighted by √overlap) and mean x = 0."""
    A = np.zeros((len(pairs) + 1, n_views))
    b = np.zeros(len(pairs) + 1)
    for k, (i, j, off, n, _) in enumerate(pairs):
        w = math.sqrt(n)
        A[k, i], A[k, j], b[k] = w, -w, -off * w
    A[-1] = 1.0  # gauge: the mean log-scale is 0 (a metric model keeps its overall scale)
    return np.linalg.lstsq(A, b, rcond=None)[0]


def fuse_view_distances(distances: Sequence[np.ndarray], cameras: Sequence[Camera], height: int,
                        median_depth_m: float | None = None, min_overlap: int = 50) -> FusedDistance:
    """Ray distances of views at the centre [h, w] (0 = unknown) → one aligned equirect map [H, 2H].

    median_depth_m: the fused map's median is set to this (relative models); None keeps the
    views' mean scale (metric models).
    """
    h_align = min(height, ALIGN_HEIGHT)
    coarse = _log_distance_samples(distances, cameras, h_align)
    pairs = _pair_offsets(coarse, 2 * h_align * h_align, min_overlap)
    x = _solve_log_scales(pairs, len(cameras)) if pairs else np.zeros(len(cameras))
    stat = lambda f: float(np.median([f(p) for p in pairs])) if pairs else float("nan")  # noqa: E731
    offset_before = stat(lambda p: abs(p[2]))
    offset_after = stat(lambda p: abs(p[2] + x[p[0]] - x[p[1]]))
    spread_after = stat(lambda p: np.median(np.abs(p[4] + x[p[0]] - x[p[1]])))
    acc = np.zeros(2 * height * height)
    wsum = np.zeros(2 * height * height)
    for (flat, logd, w), xi in zip(_log_distance_samples(distances, cameras, height), x):
        acc[flat] += w * (logd + xi)  # a view sees each equirect pixel once: += is safe
        wsum[flat] += w
    seen = wsum > 0
    fused = np.zeros_like(acc)
    fused[seen] = np.exp(acc[seen] / wsum[seen])
    if median_depth_m is not None and seen.any():
        k = median_depth_m / float(np.median(fused[seen]))
        fused *= k
        x = x + math.log(k)
    return FusedDistance(fused.reshape(height, 2 * height).astype(np.float32), np.exp(x), len(pairs), offset_before,
                         offset_after, spread_after)


def view_distance(z_depth_m: np.ndarray, cam: Camera) -> np.ndarray:
    """z-depth [h, w] of a camera at the centre → distance along each pixel's ray (0 stays 0)."""
    _, ray_len = camera_rays(cam)
    return np.where(np.isfinite(z_depth_m) & (z_depth_m > 0), z_depth_m * ray_len, 0.0)


def distance_from_model(rgb: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
                        cameras: Sequence[Camera], median_depth_m: float | None) -> FusedDistance:
    """Run `predict` (a view's RGB [h, w, 3] uint8 → z-depth [h, w]) on each camera's view cut from
    the equirect `rgb` [H, 2H, 3], and fuse the distances at the panorama's size."""
    from worldstereo.panorama.sampling import RipMap

    rip = RipMap(rgb, "equirect")
    dists = []
    for cam in cameras:
        view = np.clip(np.round(equirect_to_view(rip, cam)), 0, 255).astype(np.uint8)
        dists.append(view_distance(predict(view), cam))
    return fuse_view_distances(dists, cameras, rgb.shape[0], median_depth_m)
