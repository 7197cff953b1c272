"""Point-cloud metrics: accuracy / completeness, precision / recall / F at τ, AUC, alignment to GT.

Definitions (docs/metrics.md):

- Both clouds are voxel-downsampled at τ/2 (mean point per occupied voxel, grid anchored at the
  origin), as the Tanks and Temples toolbox does before scoring.
- d_rec→gt(p) = distance from a reconstructed point to the nearest GT point; d_gt→rec likewise.
- precision(t) = mean[d_rec→gt < t], recall(t) = mean[d_gt→rec < t] (strict <, as the toolbox),
  F(t) = 2 P R / (P + R), 0 when P + R = 0.
- accuracy = mean / median of d_rec→gt; completeness = mean / median of d_gt→rec (lower is better).
- AUC = (1/τ_max) ∫₀^τ_max F(t) dt, a right Riemann sum over `steps` equal intervals
  (t_k = k τ_max / steps, k = 1..steps), on the same τ/2-downsampled clouds. In 0..1.

>>> s = score_point_clouds(rec_xyz, gt_xyz, tau=0.05)      # rec already aligned to GT
>>> s.fscore, s.accuracy_mean, s.auc
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from worldstereo.geometry import Sim3, umeyama, voxel_downsample


# --------------------------------------------------------------------------- distances


def nn_distances(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distance [N] from each src point [N, 3] to its nearest dst point [M, 3] (kd-tree, all cores)."""
    if len(dst) == 0:
        return np.full(len(src), np.inf)
    if len(src) == 0:
        return np.zeros(0)
    d, _ = cKDTree(dst).query(src, k=1, workers=-1)
    return d


def nn_distances_reference(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Brute-force oracle of `nn_distances` (O(N·M) memory: small clouds only)."""
    diff = src[:, None, :] - dst[None, :, :]
    return np.sqrt((diff**2).sum(-1)).min(axis=1)


def prf_at(d_rec_to_gt: np.ndarray, d_gt_to_rec: np.ndarray, t: float) -> tuple[float, float, float]:
    """(precision, recall, F) at threshold t from the two distance sets (toolbox definition)."""
    if len(d_rec_to_gt) == 0 or len(d_gt_to_rec) == 0:
        return 0.0, 0.0, 0.0
    p = float(np.mean(d_rec_to_gt < t))
    r = float(np.mean(d_gt_to_rec < t))
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def fscore_curve(d_rec_to_gt: np.ndarray, d_gt_to_rec: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F(t) [T] for many thresholds at once (sorted distances + searchsorted)."""
    if len(d_rec_to_gt) == 0 or len(d_gt_to_rec) == 0:
        return np.zeros(len(thresholds))
    p = np.searchsorted(np.sort(d_rec_to_gt), thresholds, side="left") / len(d_rec_to_gt)  # count of d < t
    r = np.searchsorted(np.sort(d_gt_to_rec), thresholds, side="left") / len(d_gt_to_rec)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


def fscore_auc(d_rec_to_gt: np.ndarray, d_gt_to_rec: np.ndarray, tau_max: float, steps: int = 100) -> float:
    """(1/τ_max) ∫₀^τ_max F(t) dt as a right Riemann sum over `steps` intervals; 0..1."""
    t = tau_max * np.arange(1, steps + 1) / steps
    return float(fscore_curve(d_rec_to_gt, d_gt_to_rec, t).mean())


# --------------------------------------------------------------------------- scores


@dataclass
class PointCloudScores:
    """Scores of a reconstruction against ground truth, in GT units (metres for synthetic scenes)."""

    tau: float
    precision: float
    recall: float
    fscore: float
    accuracy_mean: float
    accuracy_median: float
    completeness_mean: float
    completeness_median: float
    auc: float
    auc_tau_max: float
    n_rec: int  # points after downsampling
    n_gt: int

    def as_dict(self) -> dict:
        return asdict(self)


def score_point_clouds(rec: np.ndarray, gt: np.ndarray, tau: float, auc_tau_max: float | None = None,
                       auc_steps: int = 100, downsample: bool = True) -> PointCloudScores:
    """Score an (already aligned) reconstruction rec [N, 3] against gt [M, 3] at threshold τ.

    Both clouds are voxel-downsampled at τ/2 first (set downsample=False to score raw points).
    auc_tau_max defaults to τ.
    """
    rec = _finite(rec)
    gt = _finite(gt)
    if downsample:
        rec = voxel_downsample(rec, tau / 2)[0] if len(rec) else rec
        gt = voxel_downsample(gt, tau / 2)[0] if len(gt) else gt
    d_rg = nn_distances(rec, gt)
    d_gr = nn_distances(gt, rec)
    p, r, f = prf_at(d_rg, d_gr, tau)
    tmax = tau if auc_tau_max is None else auc_tau_max
    return PointCloudScores(
        tau=float(tau), precision=p, recall=r, fscore=f,
        accuracy_mean=_stat(np.mean, d_rg), accuracy_median=_stat(np.median, d_rg),
        completeness_mean=_stat(np.mean, d_gr), completeness_median=_stat(np.median, d_gr),
        auc=fscore_auc(d_rg, d_gr, tmax, auc_steps), auc_tau_max=float(tmax),
        n_rec=len(rec), n_gt=len(gt),
    )


def _finite(pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 3)
    return pts[np.all(np.isfinite(pts), axis=1)]


def _stat(fn, d: np.ndarray) -> float:
    return float(fn(d)) if len(d) and np.all(np.isfinite(d)) else float("nan")


# --------------------------------------------------------------------------- alignment


def first_camera_alignment(c2w_rec0: np.ndarray, c2w_gt0: np.ndarray, scale: float = 1.0) -> Sim3:
    """Sim(3) that puts the reconstruction's first camera onto the GT's first camera.

    x_gt = c2w_gt0 · (scale · w2c_rec0 · x_rec): rotation and translation from the two poses, scale
    given (1 for metric reconstructions, or e.g. a median depth ratio)."""
    R0, t0 = c2w_rec0[:3, :3], c2w_rec0[:3, 3]
    Rg, tg = c2w_gt0[:3, :3], c2w_gt0[:3, 3]
    R = Rg @ R0.T
    return Sim3(float(scale), R, tg - scale * R @ t0)


@dataclass
class IcpResult:
    transform: Sim3  # rec → gt
    rmse: float  # over the final inlier pairs
    inlier_fraction: float
    iterations: int


def icp_sim3(src: np.ndarray, dst: np.ndarray, init: Sim3 | None = None, max_dist: float | None = None,
             iters: int = 30, with_scale: bool = True, tol: float = 1e-6, max_points: int = 200_000,
             seed: int = 0) -> IcpResult:
    """Point-to-point ICP with scale: repeat {nearest dst of each transformed src point; drop pairs
    farther than max_dist; Umeyama Sim(3) on the pairs} until the RMSE stops improving by `tol`
    (relative). max_dist defaults to 3 × the median pair distance of the current iteration.
    src is subsampled to `max_points` for speed; the transform applies to the full cloud."""
    src = _finite(src)
    dst = _finite(dst)
    rng = np.random.default_rng(seed)
    if len(src) > max_points:
        src = src[rng.choice(len(src), max_points, replace=False)]
    tree = cKDTree(dst)
    T = Sim3.identity() if init is None else init
    prev, rmse, frac, it = np.inf, np.nan, 0.0, 0
    for it in range(1, iters + 1):
        moved = T.apply(src)
        d, j = tree.query(moved, k=1, workers=-1)
        thresh = max_dist if max_dist is not None else 3.0 * float(np.median(d)) + 1e-12
        keep = d < thresh
        if keep.sum() < 3:
            break
        # the pairs relate the *original* src points to dst: refit the full transform
        T = umeyama(src[keep], dst[j[keep]], with_scale=with_scale)
        rmse = float(np.sqrt(np.mean(np.sum((T.apply(src[keep]) - dst[j[keep]]) ** 2, axis=1))))
        frac = float(keep.mean())
        if prev - rmse <= tol * max(prev, 1e-12) and prev < np.inf:
            break
        prev = rmse
    return IcpResult(T, rmse, frac, it)


def align_to_gt(rec: np.ndarray, gt: np.ndarray, init: Sim3 | None = None,
                correspondences: tuple[np.ndarray, np.ndarray] | None = None, icp: bool = True,
                max_dist: float | None = None, with_scale: bool = True) -> Sim3:
    """Alignment of a reconstruction to ground truth: an initial Sim(3) (Umeyama from known
    correspondences (src [K, 3], dst [K, 3]), else `init`, else identity = first-camera alignment
    in our world convention) refined by ICP with scale."""
    if correspondences is not None:
        T0 = umeyama(correspondences[0], correspondences[1], with_scale=with_scale)
    else:
        T0 = init if init is not None else Sim3.identity()
    if not icp:
        return T0
    return icp_sim3(rec, gt, T0, max_dist=max_dist, with_scale=with_scale).transform
