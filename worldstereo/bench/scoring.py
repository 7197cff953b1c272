"""Benchmark scoring: the naive-fusion baseline, F-score / Chamfer and pose errors of the
inconsistency benchmark, and the per-scene rows of eval_benchmark.py (definitions in docs/metrics.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from worldstereo.bench.config import BenchSetup, Method, ScoreConfig
from worldstereo.bench.manifest import ManifestEntry
from worldstereo.bench.synthetic_scene import SyntheticScene
from worldstereo.bench.tables import ScoreRow
from worldstereo.cameras import Camera
from worldstereo.errors import InputError
from worldstereo.geometry import unproject_depth, voxel_downsample
from worldstereo.io.results import FrameResults


def frame_points(results: FrameResults, k: int, c2w: np.ndarray) -> np.ndarray:
    """Frame k's depth unprojected with the pose c2w [4, 4]: finite points [M, 3] float64."""
    p = unproject_depth(results.depth[k].astype(np.float64), results.K[k].astype(np.float64), c2w).reshape(-1, 3)
    return p[np.all(np.isfinite(p), axis=1)]


def naive_fusion(results: FrameResults, points_per_frame: int, voxel: float, seed: int = 0) -> np.ndarray:
    """Unproject every frame with its given pose, same sampling as the aligner, voxel-merged."""
    rng = np.random.default_rng(seed)
    c2w = results.c2w()
    pts = []
    for i in range(len(results)):
        p = frame_points(results, i, c2w[i])
        if len(p) > points_per_frame:
            p = p[rng.choice(len(p), points_per_frame, replace=False)]
        pts.append(p)
    out, _ = voxel_downsample(np.concatenate(pts), voxel)
    return out


def score(rec: np.ndarray, gt: np.ndarray, tau: float) -> dict[str, float]:
    """F-score, precision, recall at τ and Chamfer (mean of accuracy and completeness means).

    Uses worldstereo.metrics.pointcloud (Tanks-and-Temples style, τ/2 voxel downsampling)."""
    from worldstereo.metrics.pointcloud import score_point_clouds

    s = score_point_clouds(rec, gt, tau)
    return {"fscore": s.fscore, "precision": s.precision, "recall": s.recall,
            "chamfer": 0.5 * (s.accuracy_mean + s.completeness_mean), "tau": tau}


def pose_errors(true_c2w: np.ndarray, c2w: np.ndarray, scale: float) -> np.ndarray:
    """Per-frame pose error: max(rotation angle · scale, translation error) / scale (relative)."""
    out = []
    for T, E in zip(true_c2w, c2w):
        dR = T[:3, :3].T @ E[:3, :3]
        ang = np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))
        out.append(max(ang, np.linalg.norm(T[:3, 3] - E[:3, 3]) / scale))
    return np.array(out)


# --------------------------------------------------------------------------- eval_benchmark scene rows


def frames_points(results: FrameResults, idx: Iterable[int]) -> np.ndarray:
    """The frames idx unprojected with their poses, all together: finite points [M, 3] float64."""
    c2w = results.c2w()
    return np.concatenate([frame_points(results, k, c2w[k]) for k in idx])


def results_cameras(results: FrameResults) -> list[Camera]:
    """One Camera per frame of results.npz (its K and pose)."""
    H, W = results.depth.shape[1:]
    return [Camera(K.astype(np.float64), c2w, W, H) for K, c2w in zip(results.K, results.c2w())]


def read_cloud(path: Path) -> np.ndarray:
    """x, y, z of a PLY as [N, 3] float64."""
    from worldstereo.io.ply import read_ply

    v = read_ply(path)
    return np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)


def _subsample(pts: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    return pts if len(pts) <= n else pts[np.random.default_rng(seed).choice(len(pts), n, replace=False)]


@dataclass
class GroundTruth:
    """What a scene is scored against: GT points [N, 3], τ, and the synthetic scene when there is one."""

    xyz: np.ndarray
    tau: float
    synthetic: Optional[SyntheticScene] = None


def ground_truth(entry: ManifestEntry, results: Optional[FrameResults], cfg: ScoreConfig) -> GroundTruth:
    """Synthetic scenes with a run: the surface seen from the run's own cameras (regenerated from
    kind and seed); else the entry's gt_points. τ = cfg.tau, or tau_rel × the median GT depth."""
    from worldstereo.bench.builders import make_scene

    synth = make_scene(entry.kind, entry.seed) if entry.kind is not None and entry.seed is not None else None
    if synth is not None and results is not None:
        cams = results_cameras(results)[:: max(1, cfg.frame_stride)]
        gt = synth.sample_points(cfg.gt_samples, seed=0, cameras=cams, exact=False)[0]
    elif entry.gt_points is not None:
        gt = read_cloud(entry.gt_points)
    else:
        raise InputError(entry.image, "no ground truth: give gt_points (or a synthetic kind + seed)")
    tau = cfg.tau
    if tau is None:
        med = entry.median_depth or float(np.median(np.linalg.norm(gt, axis=1)))
        tau = cfg.tau_rel * float(med)
    return GroundTruth(gt, tau, synth)


def method_cloud(method: Method, entry: ManifestEntry, results: Optional[FrameResults],
                 failures: dict[str, str]) -> tuple[Optional[np.ndarray], str]:
    """The point cloud [N, 3] a method produced for this scene (None if there is none) and a note."""
    scene = entry.scene
    if method == "pipeline":
        p = scene.cache_ply
        return (read_cloud(p), "") if p.exists() else (None, failures.get("pipeline", f"{p.name} missing"))
    if method in ("world", "synthesised"):
        p = scene.world_ply if method == "world" else scene.cache_ply
        if not p.exists():
            return None, failures.get("pipeline", f"{p.name} missing")
        if method == "world":
            return read_cloud(p), ""
        from worldstereo.io.ply import read_ply

        v = read_ply(p)  # the cache's generated points alone (step > 0): how right the invented parts are
        if "step" not in v.dtype.names:
            return None, "cache.ply has no step field"
        keep = v["step"] > 0
        return np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)[keep], "cache.ply points with step > 0"
    if method == "reconstruct":
        p = scene.align_dir / "canonical.ply"
        return (read_cloud(p), "") if p.exists() else (None, failures.get("reconstruct", "align/canonical.ply missing"))
    if method == "input_only":
        if results is not None:
            return frames_points(results, [0]), "frame 0 of results.npz"
        if entry.depth is not None and entry.intrinsics is not None:
            from worldstereo.io.images import read_depth

            fx, fy, cx, cy = entry.intrinsics
            K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
            pts = unproject_depth(read_depth(entry.depth), K).reshape(-1, 3)
            return pts[np.all(np.isfinite(pts), 1)], "input depth"
        return None, "no results.npz nor input depth"
    if method == "naive_fusion":
        return (frames_points(results, range(len(results))), "") if results is not None else (None, "no results.npz")
    return None, f"unknown method {method!r}"


def image_scores(scene: SyntheticScene, results: FrameResults, stride: int) -> dict[str, Optional[float]]:
    """Generated frames (k ≥ 1) against exact renders of the synthetic scene at the same cameras."""
    from worldstereo.metrics.images import lpips_or_none, psnr, ssim

    ps, ss, lp, absrel = [], [], [], []
    cams = results_cameras(results)
    for k in range(1, len(results), stride):
        rgb, depth = scene.render(cams[k])
        ps.append(psnr(results.image[k], rgb))
        ss.append(ssim(results.image[k], rgb))
        lp.append(lpips_or_none(results.image[k], rgb))
        ok = np.isfinite(depth) & (results.depth[k] > 0)
        if ok.any():
            absrel.append(float(np.mean(np.abs(results.depth[k][ok] - depth[ok]) / depth[ok])))
    finite_ps = [p for p in ps if np.isfinite(p)]
    return {"psnr": float(np.mean(finite_ps)) if finite_ps else None, "ssim": float(np.mean(ss)) if ss else None,
            "lpips": float(np.mean(lp)) if lp and all(x is not None for x in lp) else None,
            "depth_absrel": float(np.mean(absrel)) if absrel else None}


def geometry_scores(pts: np.ndarray, gt: GroundTruth, cfg: ScoreConfig) -> dict[str, Any]:
    """Align pts to the GT (identity start, optional Sim(3) ICP) and score them (docs/metrics.md)."""
    from worldstereo.geometry import Sim3
    from worldstereo.metrics.pointcloud import align_to_gt, score_point_clouds

    T = align_to_gt(pts, gt.xyz, init=Sim3.identity(), icp=cfg.icp, max_dist=cfg.icp_max_dist * gt.tau)
    s = score_point_clouds(T.apply(pts), gt.xyz, gt.tau, auc_tau_max=cfg.auc_tau_max * gt.tau)
    return dict(fscore=s.fscore, precision=s.precision, recall=s.recall, accuracy=s.accuracy_mean,
                completeness=s.completeness_mean, auc=s.auc, points=len(pts))


def quality_scores(results: FrameResults, pts: np.ndarray, gt: GroundTruth, cfg: ScoreConfig) -> dict[str, Any]:
    """No-reference quality of the run's frames, and image scores against exact renders (synthetic)."""
    from worldstereo.metrics.quality import score_quality

    q = score_quality(results.subset(slice(None, None, max(1, cfg.frame_stride))), points=pts)
    out: dict[str, Any] = dict(q_completeness=q.completeness, q_geometric=q.geometric_consistency,
                               q_multiview=q.multiview_consistency)
    if gt.synthetic is not None:
        out.update(image_scores(gt.synthetic, results, cfg.frame_stride))
    return out


def score_scene(entry: ManifestEntry, setup: BenchSetup, failures: dict[str, str]) -> list[ScoreRow]:
    """One row per method of a run (or finished) scene; `failures` (stage → reason) explain missing clouds."""
    from worldstereo.io.results import load_results

    results_path = entry.scene.results_npz
    results = load_results(results_path) if results_path.exists() else None
    gt = ground_truth(entry, results, setup.score)
    rows = []
    for m in setup.methods:
        pts, note = method_cloud(m, entry, results, failures)
        row = ScoreRow(entry.name, m, "missing", tau=gt.tau, note=note)
        if pts is not None and len(pts) > 0:
            pts = _subsample(pts, setup.score.max_points)
            metrics = geometry_scores(pts, gt, setup.score)
            if m == "pipeline" and results is not None:
                metrics.update(quality_scores(results, pts, gt, setup.score))
            row = ScoreRow(entry.name, m, "ok", tau=gt.tau, note=note, **metrics)
        rows.append(row)
    return rows
