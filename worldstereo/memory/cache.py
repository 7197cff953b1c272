"""The 3D cache (global-geometric memory): a coloured point cloud with confidence and provenance.

Every point records its world footprint `size` (for watertight splatting), a confidence, and
where it came from: `step` (0 = input view, k = the k-th trajectory in the plan order) and
`frame`. A stage rerun for trajectory k reads the cache as it was before k by keeping step < k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.geometry import (Sim3, depth_discontinuities, project_points, robust_umeyama, transform_points,
                                  unproject_depth, voxel_keys)
from worldstereo.io.ply import read_ply, write_ply
from worldstereo.panorama.equirect import EquirectCamera
from worldstereo.render.points import PointRender, fill_cracks, render_points

FIELDS = ("x", "y", "z", "red", "green", "blue", "conf", "size", "step", "frame")


@dataclass
class PointCache:
    xyz: np.ndarray  # [N, 3] float32 world
    rgb: np.ndarray  # [N, 3] uint8
    conf: np.ndarray  # [N] float32
    size: np.ndarray  # [N] float32 world footprint (pixel size z/f of the source view)
    step: np.ndarray  # [N] int16
    frame: np.ndarray  # [N] int32

    def __len__(self) -> int:
        return len(self.xyz)

    @staticmethod
    def empty() -> "PointCache":
        return PointCache(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.float32),
                          np.zeros(0, np.float32), np.zeros(0, np.int16), np.zeros(0, np.int32))

    def select(self, mask: np.ndarray) -> "PointCache":
        return PointCache(self.xyz[mask], self.rgb[mask], self.conf[mask], self.size[mask], self.step[mask], self.frame[mask])

    def concat(self, other: "PointCache") -> "PointCache":
        return PointCache(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays())))

    def copy(self) -> "PointCache":
        return PointCache(*(a.copy() for a in self._arrays()))

    def _arrays(self):
        return self.xyz, self.rgb, self.conf, self.size, self.step, self.frame

    def before_step(self, step: int) -> "PointCache":
        """The cache as it stood before trajectory `step` was merged."""
        return self.select(self.step < step)

    def render(self, cam: Camera, splat_scale: float = 1.0, max_radius_px: float = 4.0,
               close_cracks: bool = True) -> PointRender:
        """Splat the cache into `cam`; by default one-pixel cracks are closed (see fill_cracks)."""
        out = render_points(self.xyz, self.rgb, self.size, cam.K, cam.w2c, cam.width, cam.height,
                            splat_scale=splat_scale, max_radius_px=max_radius_px)
        return fill_cracks(out) if close_cracks else out

    # ---- IO
    def save(self, path: str | Path) -> None:
        write_ply(path, {
            "x": self.xyz[:, 0].astype(np.float32), "y": self.xyz[:, 1].astype(np.float32),
            "z": self.xyz[:, 2].astype(np.float32),
            "red": self.rgb[:, 0], "green": self.rgb[:, 1], "blue": self.rgb[:, 2],
            "conf": self.conf.astype(np.float32), "size": self.size.astype(np.float32),
            "step": self.step.astype(np.int16), "frame": self.frame.astype(np.int32),
        })

    @staticmethod
    def load(path: str | Path) -> "PointCache":
        v = read_ply(path)
        return PointCache(
            np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32),
            np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.uint8),
            v["conf"].astype(np.float32), v["size"].astype(np.float32),
            v["step"].astype(np.int16), v["frame"].astype(np.int32),
        )


def points_from_view(rgb: np.ndarray, depth_m: np.ndarray, cam: Camera, conf: np.ndarray | float, step: int,
                     frame: int, mask: np.ndarray | None = None, edge_rel_thresh: float | None = 0.04) -> PointCache:
    """Unproject a view's valid (and, optionally, non-edge) pixels into cache points."""
    valid = np.isfinite(depth_m) & (depth_m > 0)
    if edge_rel_thresh is not None:
        valid &= ~depth_discontinuities(depth_m, edge_rel_thresh)
    if mask is not None:
        valid &= mask
    pts = unproject_depth(depth_m, cam.K, cam.c2w)[valid]
    f = 0.5 * (cam.K[0, 0] + cam.K[1, 1])
    conf_arr = np.broadcast_to(np.asarray(conf, np.float32), depth_m.shape)[valid]
    n = len(pts)
    return PointCache(pts.astype(np.float32), rgb[valid].astype(np.uint8), conf_arr.astype(np.float32),
                      (depth_m[valid] / f).astype(np.float32), np.full(n, step, np.int16), np.full(n, frame, np.int32))


def fuse_into(cache: PointCache, target: np.ndarray, new: PointCache, max_conf: float) -> None:
    """In place: fuse new points into cache points `target` [M] (one per new point), averaging
    position and colour by confidence and summing confidence up to `max_conf`."""
    w_new = new.conf.astype(np.float64)
    uniq, inv = np.unique(target, return_inverse=True)
    w_old = cache.conf[uniq].astype(np.float64)
    tot = w_old + np.bincount(inv, weights=w_new, minlength=len(uniq))
    for arr, arr_new in ((cache.xyz, new.xyz), (cache.rgb, new.rgb)):
        acc = np.stack([np.bincount(inv, weights=w_new * arr_new[:, k], minlength=len(uniq)) for k in range(3)], 1)
        fused = (arr[uniq] * w_old[:, None] + acc) / tot[:, None]
        arr[uniq] = np.round(fused) if arr.dtype == np.uint8 else fused
    cache.conf[uniq] = np.minimum(tot, max_conf)


def violates_free_space(xyz: np.ndarray, cam: Camera | EquirectCamera, depth_m: np.ndarray,
                        margin: float = 0.03) -> np.ndarray:
    """[N] bool: points that an observed view says are empty space.

    A point that projects inside `cam`'s image in front of its observed depth (by more than a
    relative margin) would have been seen there; a synthesised point like that contradicts a
    real observation and must not enter the cache. `cam` may be a panorama (EquirectCamera, with
    its ray-distance map as `depth_m`): it sees every direction from the world origin.
    """
    if isinstance(cam, EquirectCamera):
        return cam.free_space(xyz, depth_m, margin)
    uv, z = project_points(xyz.astype(np.float64), cam.K, cam.w2c)
    u = np.round(uv[:, 0])
    v = np.round(uv[:, 1])
    inside = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    out = np.zeros(len(xyz), bool)
    ui, vi = u[inside].astype(int), v[inside].astype(int)
    d = depth_m[vi, ui]
    out[inside] = (d > 0) & np.isfinite(d) & (z[inside] < d * (1.0 - margin))
    return out


WORLD_MIN_CONF = 0.5
"""world.ply keeps cache points with at least this confidence (chosen on the synthetic benchmark,
BENCHMARKS.md, issue 12: best of 0.0–1.5 on all 8 scenes): input points (1.0 and up) and plane hits
(0.6) pass; the geometric backend stores no interpolated / extrapolated guesses (conf 0), other
backends' points below 0.5 pass once later frames re-observed and fused them enough."""


def world_points(cache: PointCache, min_conf: float = WORLD_MIN_CONF,
                 observed: tuple[Camera, np.ndarray] | None = None) -> PointCache:
    """The trusted part of the cache: confidence ≥ min_conf and, when the input view is given, never
    in space that view saw empty (the input's own points are never removed by that test)."""
    keep = cache.conf >= min_conf
    if observed is not None:
        keep &= (cache.step == 0) | ~violates_free_space(cache.xyz, *observed)
    return cache.select(keep)


def fuse_frame(cache: PointCache, rgb: np.ndarray, depth_m: np.ndarray, conf: np.ndarray, cam: Camera,
               render: PointRender, T: Sim3, step: int, frame: int, voxel: float, max_conf: float,
               agree_tol: float = 0.02, observed: tuple[Camera, np.ndarray] | None = None) -> PointCache:
    """Merge one frame after its alignment T: pixels that re-observe the rendered cache point
    (depth within agree_tol) update that point; the rest are new surface, merged by voxel.

    Fusing through the render's point index keeps the cache from growing with every re-observation,
    which a voxel hash alone would do wherever the grid cuts a surface between two points.
    """
    pts = points_from_view(rgb, depth_m, cam, conf, step, frame, edge_rel_thresh=None)
    keep = pts.conf > 0  # conf 0 = the generator's own verdict: not to be trusted
    pts.xyz = T.apply(pts.xyz.astype(np.float64)).astype(np.float32)
    pts.size = pts.size * np.float32(T.s)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    idx = render.index[valid]
    z_cache = render.depth[valid]
    z_new = transform_points(cam.w2c, pts.xyz.astype(np.float64))[:, 2]  # aligned depth, same pixel order
    agree = (idx >= 0) & (np.abs(z_new - z_cache) <= agree_tol * z_cache) & keep
    out = cache.copy()
    if agree.any():
        fuse_into(out, idx[agree], pts.select(agree), max_conf)
    new = pts.select(~agree & keep)
    if observed is not None:
        new = new.select(~violates_free_space(new.xyz, *observed))
    return merge_voxel(out, new, voxel, max_conf, copy=False)  # `out` is this call's own copy already


def merge_voxel(cache: PointCache, new: PointCache, voxel: float, max_conf: float = 10.0,
                copy: bool = True) -> PointCache:
    """Merge `new` into `cache` by voxel with confidence.

    New points in an occupied voxel are fused into that voxel's oldest cache point (position and
    colour averaged by confidence, confidence summed up to `max_conf`); new points in empty
    voxels are reduced to one confidence-weighted point per voxel and appended.
    """
    if len(new) == 0:
        return cache
    keys_n = voxel_keys(new.xyz.astype(np.float64), voxel)
    hit, oldest = _oldest_in_voxels(cache.xyz, keys_n, voxel)
    out = cache.copy() if copy else cache  # copy=False: `cache` is updated in place
    if hit.any():
        fuse_into(out, oldest, new.select(hit), max_conf)  # into the voxel's oldest point
    fresh = new.select(~hit)
    if len(fresh):
        uniq, first, inv = np.unique(keys_n[~hit], return_index=True, return_inverse=True)
        w = fresh.conf.astype(np.float64)
        wsum = np.bincount(inv, weights=w)
        mean = lambda a: np.stack([np.bincount(inv, weights=w * a[:, k]) for k in range(a.shape[1])], 1) / wsum[:, None]
        reduced = PointCache(mean(fresh.xyz).astype(np.float32), np.round(mean(fresh.rgb)).astype(np.uint8),
                             np.minimum(wsum, max_conf).astype(np.float32), fresh.size[first], fresh.step[first],
                             fresh.frame[first])
        out = out.concat(reduced)
    return out


def _oldest_in_voxels(xyz: np.ndarray, keys_n: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """For voxel keys [M]: (hit [M] bool: the voxel holds a cache point; the lowest cache index in
    each hit voxel [hit.sum()]).

    Only cache points inside the new points' voxel-aligned bounding box can share a voxel with
    them, and only those whose key is one of the new keys are sorted: a cache of millions of
    points is never sorted whole (this runs once per fused frame).
    """
    if len(xyz) == 0:
        return np.zeros(len(keys_n), bool), np.zeros(0, np.int64)
    uniq_n = np.sort(keys_n)
    uniq_n = uniq_n[np.concatenate([[True], uniq_n[1:] != uniq_n[:-1]])]
    off = np.int64(1 << 20)  # voxel_keys' packing: 21 bits per axis
    cell_lo = [((uniq_n >> s) & 0x1FFFFF).min() - off for s in (42, 21, 0)]
    cell_hi = [((uniq_n >> s) & 0x1FFFFF).max() - off for s in (42, 21, 0)]
    cand = np.flatnonzero(np.all((xyz >= np.asarray(cell_lo) * voxel - voxel)
                                 & (xyz < (np.asarray(cell_hi) + 2) * voxel), axis=1))
    keys_c = voxel_keys(xyz[cand].astype(np.float64), voxel)
    pos = np.minimum(np.searchsorted(uniq_n, keys_c), len(uniq_n) - 1)
    member = uniq_n[pos] == keys_c
    cand, keys_c = cand[member], keys_c[member]
    voxels, first = np.unique(keys_c, return_index=True)  # cand ascends: first = lowest index
    if len(voxels) == 0:
        return np.zeros(len(keys_n), bool), np.zeros(0, np.int64)
    pos_n = np.minimum(np.searchsorted(voxels, keys_n), len(voxels) - 1)
    hit = voxels[pos_n] == keys_n
    return hit, cand[first][pos_n[hit]]


@dataclass
class FrameAlignment:
    """How one generated frame's depth was aligned to the cache."""

    frame: int
    overlap_px: int
    scale: float
    rmse_before: float
    rmse_after: float
    inlier_ratio: float


def align_frame_to_cache(depth_m: np.ndarray, cam: Camera, cache_render: PointRender, frame: int,
                         min_overlap_px: int = 200, max_pairs: int = 4000, seed: int = 0) -> tuple[Sim3, FrameAlignment]:
    """Robust Sim(3) taking the frame's unprojected depth onto the cache's points at the same pixels.

    Correspondences are pixel-exact: frame depth and cache render depth at pixels both cover.
    Too little overlap keeps the frame as it is (identity).
    """
    valid = (~cache_render.hole) & np.isfinite(depth_m) & (depth_m > 0)
    n = int(valid.sum())
    if n < min_overlap_px:
        return Sim3.identity(), FrameAlignment(frame, n, 1.0, float("nan"), float("nan"), 0.0)
    src = unproject_depth(depth_m, cam.K, cam.c2w)[valid]
    dst = unproject_depth(cache_render.depth, cam.K, cam.c2w)[valid]
    rng = np.random.default_rng(seed)
    if n > max_pairs:
        idx = rng.choice(n, max_pairs, replace=False)
        src, dst = src[idx], dst[idx]
    fit = robust_umeyama(src, dst, seed=seed)
    return fit.transform, FrameAlignment(frame, n, float(fit.transform.s), fit.rmse_before, fit.rmse_after,
                                         float(fit.inliers.mean()))
