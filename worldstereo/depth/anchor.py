"""Make a depth model's relative output metric against a reference depth (a cache render) where both see.

A monocular model gives depth up to an unknown scale (and, for disparity models such as Depth
Anything, an unknown shift of inverse depth). Where the 3D cache renders at the same camera, its
depth is metric: a robust affine fit in the model's own output space recovers both unknowns.

>>> depth_m, fit = anchor_depth(pred, "disparity", render.depth, ~render.hole)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldstereo.depth.model import DepthOutput


@dataclass(frozen=True)
class AnchorFit:
    """pred ≈ a · target + b over the inliers; target = 1/depth for disparity, depth otherwise."""

    a: float
    b: float
    pixels: int
    """Pixels where both the prediction and the reference were valid."""
    inlier_ratio: float
    """Fraction of those the trimmed fit kept."""


def robust_affine(x: np.ndarray, y: np.ndarray, samples: int = 256, iters: int = 20, k: float = 2.5,
                  seed: int = 0) -> tuple[float, float, np.ndarray]:
    """(a, b, inliers) of y ≈ a·x + b: least median of squares over seeded random point pairs (half
    the data may be outliers), then least squares trimmed at k robust sigmas until the inliers settle."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x), (2, samples))
    ok = np.abs(x[i] - x[j]) > 1e-12
    i, j = i[ok], j[ok]
    if len(i) == 0:
        return 0.0, float(np.median(y)), np.ones(len(x), bool)
    a_c = (y[i] - y[j]) / (x[i] - x[j])
    b_c = y[i] - a_c * x[i]
    sub = rng.choice(len(x), min(len(x), 2000), replace=False)
    med = np.median(np.abs(y[sub][None] - a_c[:, None] * x[sub][None] - b_c[:, None]), axis=1)
    a, b = a_c[np.argmin(med)], b_c[np.argmin(med)]
    keep = None
    for _ in range(iters):
        r = np.abs(y - (a * x + b))
        sigma = 1.4826 * np.median(r if keep is None else r[keep]) + 1e-12
        new = r <= k * sigma
        if new.sum() < 3 or (keep is not None and np.array_equal(new, keep)):
            break
        keep = new
        a, b = np.linalg.lstsq(np.stack([x[keep], np.ones(int(keep.sum()))], 1), y[keep], rcond=None)[0]
    return float(a), float(b), keep if keep is not None else np.ones(len(x), bool)


def anchor_depth(pred: np.ndarray, output: DepthOutput, ref_depth_m: np.ndarray, ref_valid: np.ndarray,
                 min_px: int = 200, max_rel: float = 50.0) -> tuple[np.ndarray, AnchorFit | None]:
    """Metric depth [H, W] float32 (0 = unknown) from a model's output [H, W] and a reference depth.

    disparity: pred ≈ a/depth + b; depth: pred ≈ a·depth + b; metric: pred ≈ a·depth (scale only,
    the model's zero is kept). Fewer than `min_px` shared pixels, or a fit that is not increasing
    in the right direction (a ≤ 0), gives all zeros and no fit: such a frame cannot be made metric.
    """
    both = ref_valid & np.isfinite(ref_depth_m) & (ref_depth_m > 0) & np.isfinite(pred)
    if output != "disparity":
        both &= pred > 0
    n = int(both.sum())
    none = np.zeros(pred.shape, np.float32)
    if n < min_px:
        return none, None
    target = 1.0 / ref_depth_m[both] if output == "disparity" else ref_depth_m[both]
    if output == "metric":
        a = float(np.median(pred[both] / target))
        b, inliers = 0.0, np.abs(pred[both] - a * target) <= 0.1 * a * target
    else:
        a, b, inliers = robust_affine(target.astype(np.float64), pred[both].astype(np.float64))
    if not a > 0:
        return none, None
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = a / (pred - b) if output == "disparity" else (pred - b) / a
    # a disparity near the fitted shift means "very far": past max_rel × the reference's median it is unknown
    far = max_rel * float(np.median(ref_depth_m[both]))
    depth = np.where(np.isfinite(depth) & (depth > 0) & (depth < far), depth, 0.0).astype(np.float32)
    return depth, AnchorFit(a, b, n, float(inliers.mean()))
