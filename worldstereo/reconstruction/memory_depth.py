"""Depth refined with a scene's memory: each frame's depth aligned (robust scale + shift) to what the
3D cache (cache.ply) and the memory bank's keyframes (memory_bank/) show at its camera, then filled
where it has none and replaced where it disagrees with a confident cache.

    refined, report = refine_with_memory(frames, depth, scene_root)

The reference depth at a frame = the cache splatted into its camera (worldstereo.memory.cache), and
where the cache leaves a hole, the bank keyframes' depth splatted the same way. Only scene folders
of ours carry both; a folder with neither is returned unchanged (report says so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.reconstruction.types import Frames


@dataclass
class MemoryDepthConfig:
    """Thresholds of the refinement."""

    min_overlap_px: int = 200
    """Pixels where frame and reference both have depth needed to fit scale and shift (else kept)."""
    fill_conf: float = 0.5
    """Cache confidence from which the reference fills pixels the frame has no depth at."""
    replace_conf: float = 1.0
    """Cache confidence from which the reference replaces a pixel that disagrees after the fit."""
    replace_rel: float = 0.05
    """Relative depth difference above which a pixel disagrees."""
    bank_stride: int = 2
    """Every this-many-th pixel of a bank keyframe's depth is splatted (its footprint covers the gap)."""


@dataclass
class FrameFix:
    """What the refinement did to one frame."""

    frame: int
    overlap_px: int
    scale: float  # refined = scale · depth + shift (1, 0: not fitted)
    shift: float
    rel_err_before: float  # median |depth − reference| / reference over the overlap
    rel_err_after: float
    filled_px: int
    replaced_px: int


@dataclass
class Reference:
    """Reference depth [H, W] (0 = none) and its confidence [H, W] at one camera."""

    depth: np.ndarray
    conf: np.ndarray


def load_memory(scene_root: Path, bank_stride: int):
    """(cache, bank cloud, bank views): cache.ply and memory_bank/ as PointCache objects (None where
    absent); the bank's keyframes become points of confidence 1 with their pixel footprint."""
    from worldstereo.memory.bank import MemoryBank
    from worldstereo.memory.cache import PointCache, points_from_view

    cache = PointCache.load(scene_root / "cache.ply") if (scene_root / "cache.ply").exists() else None
    bank = MemoryBank(scene_root / "memory_bank")
    parts = []
    for e in bank.entries:
        d = bank.depth(e).astype(np.float32)
        keep = np.zeros(d.shape, bool)
        keep[::bank_stride, ::bank_stride] = True
        pts = points_from_view(bank.image(e), np.where(keep, d, 0.0), e.camera, 1.0, e.step, e.frame)
        pts.size *= bank_stride  # one point stands for stride × stride pixels
        parts.append(pts)
    bank_cloud = None
    for p in parts:
        bank_cloud = p if bank_cloud is None else bank_cloud.concat(p)
    return cache, bank_cloud, len(bank.entries)


def reference_at(cam: Camera, cache, bank_cloud) -> Reference:
    """The cache's render at `cam`, its holes filled from the bank keyframes' render (conf 1)."""
    H, W = cam.height, cam.width
    depth, conf = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    if cache is not None and len(cache):
        r = cache.render(cam)
        hit = ~r.hole
        depth[hit] = r.depth[hit]
        conf[hit] = cache.conf[r.index[hit]]
    if bank_cloud is not None and len(bank_cloud):
        r = bank_cloud.render(cam)
        gap = (depth <= 0) & ~r.hole
        depth[gap] = r.depth[gap]
        conf[gap] = 1.0
    return Reference(depth, conf)


def robust_scale_shift(d: np.ndarray, ref: np.ndarray, iters: int = 8) -> tuple[float, float]:
    """(s, b) minimising Σ ρ((s·d + b − ref) / ref) by IRLS with Tukey weights (c = 4.685 · 1.4826 ·
    MAD of the residual), started at s = median(ref / d), b = 0; d, ref [M] > 0."""
    s, b = float(np.median(ref / d)), 0.0
    A = np.stack([d / ref, 1.0 / ref], 1)  # residual = A @ (s, b) − 1
    for _ in range(iters):
        r = A @ np.array([s, b]) - 1.0
        c = 4.685 * max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 1e-4)
        w = np.where(np.abs(r) < c, (1 - (r / c) ** 2) ** 2, 0.0)
        if w.sum() < 3:
            break
        sw = np.sqrt(w)
        s, b = np.linalg.lstsq(A * sw[:, None], sw, rcond=None)[0]
    return float(s), float(b)


def refine_frame(i: int, d: np.ndarray, ref: Reference, cfg: MemoryDepthConfig) -> tuple[np.ndarray, FrameFix]:
    """One frame's depth [H, W] scaled / shifted onto the reference, then filled and replaced."""
    both = (d > 0) & (ref.depth > 0)
    n = int(both.sum())
    rel = lambda x: float(np.median(np.abs(x[both] - ref.depth[both]) / ref.depth[both])) if n else float("nan")  # noqa: E731
    before = rel(d)
    s, b = robust_scale_shift(d[both].astype(np.float64), ref.depth[both].astype(np.float64)) \
        if n >= cfg.min_overlap_px else (1.0, 0.0)
    out = np.where(d > 0, s * d + b, 0.0).astype(np.float32)
    out[out < 0] = 0.0
    fill = (out <= 0) & (ref.depth > 0) & (ref.conf >= cfg.fill_conf)
    bad = (out > 0) & (ref.depth > 0) & (ref.conf >= cfg.replace_conf) & \
          (np.abs(out - ref.depth) > cfg.replace_rel * ref.depth)
    out[fill | bad] = ref.depth[fill | bad]
    return out, FrameFix(i, n, s, b, before, rel(out), int(fill.sum()), int(bad.sum()))


def refine_with_memory(frames: Frames, depth: np.ndarray, scene_root: str | Path,
                       cfg: MemoryDepthConfig | None = None) -> tuple[np.ndarray, dict]:
    """depth [N, H, W] (0 = none) of a scene folder's frames refined with its cache and bank; the
    report: {"used": bool, "cache_points", "bank_views", "frames": [FrameFix as dict]} (or "reason")."""
    cfg = cfg or MemoryDepthConfig()
    root = Path(scene_root)
    cache, bank_cloud, bank_views = load_memory(root, cfg.bank_stride)
    if cache is None and bank_cloud is None:
        return depth, {"used": False, "reason": "no cache.ply or memory_bank/ in the scene folder"}
    out, fixes = np.zeros_like(depth), []
    for i, cam in enumerate(frames.cameras):
        out[i], fix = refine_frame(i, depth[i], reference_at(cam, cache, bank_cloud), cfg)
        fixes.append(asdict(fix))
    return out, {"used": True, "cache_points": 0 if cache is None else len(cache),
                 "bank_views": bank_views, "frames": fixes}
