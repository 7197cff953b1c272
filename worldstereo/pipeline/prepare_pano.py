"""Stage `prepare` for a panorama: the equirect (or the release's pano_bank) and its distance map →
input/panorama.png, the panoramic cache and the 27 bank views in the memory bank (docs/panorama.md).

Depth: --pano-depth (a distance map), --depth-model (a local model on perspective views, fused:
panorama/depth.py), or the spherical prior (neither): every ray ends at `median_depth_m` (a sphere about the
panorama's centre). It gives the planner a pivot and the generator something to render, nothing
more; the manifest records it with fallback true and the run warns loudly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldstereo.console import warn
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_copy, atomic_save
from worldstereo.io.images import read_depth, write_image
from worldstereo.memory.bank import MemoryBank
from worldstereo.memory.cache import PointCache
from worldstereo.panorama.bank import MIDDLE_VIEWS, RELEASE_LAYOUT, BankLayout
from worldstereo.panorama.cache import FOOTPRINT_SCALE, cache_height, points_from_panorama
from worldstereo.panorama.equirect import is_equirect_shape
from worldstereo.panorama.load import load_panorama_view, resize_equirect
from worldstereo.panorama.planner import pivot_depths_from_distance
from worldstereo.panorama.views import PanoView, distance_to_view_depth, make_bank, read_pano_bank, views_to_equirect
from worldstereo.pipeline.config import CacheConfig, InputConfig
from worldstereo.scene import DepthSource, SceneDir

# input/depth.npy of a panoramic scene: distance along each equirect pixel's ray (not z-depth)
PANO_DEPTH_MEANING = "ray-distance"


@dataclass
class PanoramaView:
    """A panorama at working size with its bank, before anything is written."""

    rgb: np.ndarray  # [H, 2H, 3] uint8 equirect
    distance_m: np.ndarray  # [H, 2H] float32 distance along each ray, 0 = unknown
    views: list[PanoView]  # the bank, each with z-depth
    depth_source: DepthSource
    camera_source: str
    source_id: str  # content hash of the inputs, part of the stage hash


def scaled_layout(scale: float) -> BankLayout:
    """The release's layout at `scale` × its 832×480 (fields of view kept)."""
    return BankLayout(width=max(8, int(round(RELEASE_LAYOUT.width * scale))),
                      height=max(8, int(round(RELEASE_LAYOUT.height * scale))))


def _spherical_prior(H: int, cfg: InputConfig) -> tuple[np.ndarray, DepthSource]:
    warn(f"no --pano-depth or --depth-model: using the SPHERICAL PRIOR (every ray ends at {cfg.median_depth_m} m). "
         "Geometry will be a rough guess; give a distance map for real results.")
    src = DepthSource("prior", None, True, f"spherical prior: distance {cfg.median_depth_m} m along every ray")
    return np.full((H, 2 * H), cfg.median_depth_m, np.float32), src


def _model_distance(cfg: InputConfig, rgb: np.ndarray | None, bank: list[PanoView] | None,
                    height: int) -> tuple[np.ndarray, DepthSource]:
    """The depth model on the depth views cut from the equirect `rgb` (the bank + 2 pole views), or
    on the given `bank` views, fused into one distance map [height, 2·height] (panorama/depth.py)."""
    from worldstereo.depth.model import DepthModel
    from worldstereo.panorama.depth import depth_cameras, distance_from_model, fuse_view_distances, view_distance

    model = DepthModel(cfg.depth_model)
    relative = cfg.depth_model_output != "metric"

    def predict(view_rgb: np.ndarray) -> np.ndarray:
        return model.depth(view_rgb, cfg.depth_model_output, cfg.median_depth_m)

    median = cfg.median_depth_m if relative else None
    if bank is None:
        cams = depth_cameras(scaled_layout(cfg.pano_view_scale))
        fused = distance_from_model(rgb, predict, cams, median)
        which = f"{len(cams)} views (the bank + 2 pole views)"
    else:
        cams = [v.camera for v in bank]
        fused = fuse_view_distances([view_distance(predict(v.rgb), v.camera) for v in bank], cams, height, median)
        which = f"{len(cams)} views (the pano_bank's)"
    scaled = f"; fused median set to {cfg.median_depth_m} m" if relative else ""
    note = (f"{cfg.depth_model_output} on {which}, scales aligned on {fused.pairs} overlapping pairs: scale offset "
            f"between views (median |log ratio|) {fused.offset_before:.4f} before, {fused.offset_after:.4f} after; "
            f"per-pixel disagreement after {fused.spread_after:.4f}{scaled}")
    return fused.distance_m, DepthSource("model", str(Path(cfg.depth_model).absolute()), False, note)


def _from_equirect(cfg: InputConfig) -> PanoramaView:
    pano = load_panorama_view(cfg.panorama, cfg.pano_depth, working_width=cfg.pano_width)
    source_id = pano.source_id
    if pano.distance_m is not None:
        distance = pano.distance_m
        src = DepthSource("file", str(Path(cfg.pano_depth).absolute()), False, "metres along each ray (equirect)")
    elif cfg.depth_model is not None:
        distance, src = _model_distance(cfg, pano.rgb, None, pano.height)
        source_id = hashlib.sha1(source_id.encode() + distance.tobytes()).hexdigest()[:16]
    else:
        distance, src = _spherical_prior(pano.height, cfg)
    views = make_bank(pano.rgb, distance, scaled_layout(cfg.pano_view_scale))
    w, h = pano.original_size
    return PanoramaView(pano.rgb, distance, views, src, f"equirect {w}×{h} → release bank layout", source_id)


def _from_bank(cfg: InputConfig) -> PanoramaView:
    views = read_pano_bank(cfg.pano_bank)
    digest = hashlib.sha1((Path(cfg.pano_bank) / "cameras.json").read_bytes())
    for v in views:
        digest.update(np.ascontiguousarray(v.rgb).tobytes())
    if cfg.pano_depth is not None:
        d0 = read_depth(cfg.pano_depth)
        if not is_equirect_shape(*d0.shape):
            raise InputError(cfg.pano_depth, f"depth is {d0.shape[1]}x{d0.shape[0]}: a panorama's distance map must be 2:1")
        H = cfg.pano_width // 2 if d0.shape[0] > cfg.pano_width // 2 else d0.shape[0]
        distance = resize_equirect(np.where(np.isfinite(d0), d0, 0.0).astype(np.float32), 2 * H, H, nearest=True)
        src = DepthSource("file", str(Path(cfg.pano_depth).absolute()), False, "metres along each ray (equirect)")
        digest.update(np.ascontiguousarray(d0).tobytes())
    elif cfg.depth_model is not None:
        distance, src = _model_distance(cfg, None, views, cfg.pano_width // 2)
        digest.update(distance.tobytes())
    else:
        distance, src = _spherical_prior(cfg.pano_width // 2, cfg)
    H = distance.shape[0]
    rgb, _weight = views_to_equirect([v.rgb for v in views], [v.camera for v in views], H)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    views = [PanoView(v.index, v.camera, v.rgb, distance_to_view_depth(distance, v.camera)) for v in views]
    return PanoramaView(rgb, distance, views, src, f"pano_bank {Path(cfg.pano_bank).name}/cameras.json",
                        digest.hexdigest()[:16])


def load_panorama_input(cfg: InputConfig) -> PanoramaView:
    """Read and validate a panorama or a pano_bank (+ distance map); nothing is written."""
    pv = _from_bank(cfg) if cfg.pano_bank is not None else _from_equirect(cfg)
    if len(pv.views) <= max(MIDDLE_VIEWS):
        raise InputError(cfg.pano_bank or cfg.panorama, f"the bank has {len(pv.views)} views: the planner starts "
                                                        f"from views {MIDDLE_VIEWS}, so it needs at least {max(MIDDLE_VIEWS) + 1}")
    return pv


def _panoramic_cache(pv: PanoramaView, cache_cfg: CacheConfig) -> PointCache:
    """The step-0 cache from the panorama at cache_height (colour box-filtered, distance nearest)."""
    H = pv.rgb.shape[0]
    h = cache_height(H, float(pv.views[0].camera.K[0, 0]))
    rgb, distance = pv.rgb, pv.distance_m
    if h < H:
        rgb, distance = resize_equirect(rgb, 2 * h, h), resize_equirect(distance, 2 * h, h, nearest=True)
    return points_from_panorama(rgb, distance, 1.0, step=0, frame=0, edge_rel_thresh=cache_cfg.edge_rel_thresh)


def write_prepared_panorama(scene: SceneDir, pv: PanoramaView, cache_cfg: CacheConfig) -> dict:
    """Write input/ (panorama.png, depth.npy = ray distance, image.png = bank view 0), the panoramic
    cache (cache/step_00.ply, copied to cache.ply) and the bank views (source `panorama`, step 0);
    returns SceneManifest fields."""
    cache = _panoramic_cache(pv, cache_cfg)
    if len(cache) < 100:  # checked before the first write
        raise InputError(pv.depth_source.path or scene.input_depth, "depth leaves fewer than 100 usable points for the cache")
    cams = [v.camera for v in pv.views]
    pivots = pivot_depths_from_distance(pv.distance_m, cams)
    write_image(scene.input_panorama, pv.rgb)
    write_image(scene.input_image, pv.views[0].rgb)
    atomic_save(scene.input_depth, lambda p: np.save(open(p, "wb"), pv.distance_m))
    cache.save(scene.cache_step(0))
    atomic_copy(scene.cache_step(0), scene.cache_ply)
    bank = MemoryBank(scene.memory_bank)
    bank.entries = []
    for v in pv.views:
        bank.add(v.rgb, v.depth_m, v.camera, source="panorama", step=0, frame=v.index)
    bank.save()
    v0 = pv.views[0]
    valid = pv.distance_m > 0
    return {
        "input_kind": "panorama",
        "working_size": (v0.camera.width, v0.camera.height),
        "panorama_size": (pv.rgb.shape[1], pv.rgb.shape[0]),
        "input_depth_meaning": PANO_DEPTH_MEANING,
        "K": v0.camera.K.tolist(),
        "camera_source": pv.camera_source,
        "depth_source": pv.depth_source,
        "pivot_depth_m": float(np.median(list(pivots.values()))),
        "valid_depth_fraction": float(valid.mean()),
        "cache_points": {"input": len(cache)},
        # the point spacing, as a photo's voxel is its pixel footprint (size is the enlarged splat)
        "voxel_m": float(cache_cfg.voxel_scale * np.median(cache.size) / FOOTPRINT_SCALE),
    }

