"""Stage `prepare`: the reference view, its camera and depth, the initial 3D cache and memory bank."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from worldstereo.cameras import Camera, intrinsics_from_fov, scale_intrinsics
from worldstereo.console import warn
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_copy, atomic_save
from worldstereo.io.images import read_depth, read_image, resize_depth_nearest, write_image
from worldstereo.memory.bank import MemoryBank
from worldstereo.memory.cache import points_from_view
from worldstereo.pipeline.config import CacheConfig, InputConfig
from worldstereo.scene import DepthSource, SceneDir

# Middlebury 2014 "Motorcycle" at the quarter resolution scikit-image ships (calib.txt / 4).
MOTORCYCLE = {"f": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline_m": 0.193001}


@dataclass
class InputView:
    """The reference view at working size, before anything is written."""

    rgb: np.ndarray  # [H, W, 3] uint8
    depth_m: np.ndarray  # [H, W] float32, 0 = unknown
    K: np.ndarray  # [3, 3]
    depth_source: DepthSource  # recorded in scene.json
    camera_source: str
    source_id: str  # content hash of the inputs, part of the stage hash


def motorcycle_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, depth_m with inf holes, K) of the real Middlebury motorcycle, from scikit-image's data."""
    from skimage.data import stereo_motorcycle

    left, _right, disp = stereo_motorcycle()
    m = MOTORCYCLE
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(np.isfinite(disp), m["f"] * m["baseline_m"] / (disp + m["doffs"]), np.inf)
    K = np.array([[m["f"], 0, m["cx"]], [0, m["f"], m["cy"]], [0, 0, 1.0]])
    return left, depth.astype(np.float32), K


def _hash_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


MIN_SIDE_PX = 16  # smaller views leave too few pixels for a cache, retrieval or a video codec


def _working_size(path: Path | str, w: int, h: int, long_side: int) -> tuple[int, int, float]:
    """(W, H, scale) with the long side at `long_side`; a view too small or too thin is an error."""
    if min(w, h) < MIN_SIDE_PX:
        raise InputError(path, f"image is {w}×{h} pixels: both sides must be at least {MIN_SIDE_PX}")
    s = long_side / max(w, h)
    W, H = int(round(w * s)), int(round(h * s))
    if min(W, H) < MIN_SIDE_PX:
        raise InputError(path, f"image is {w}×{h}: at --long-side {long_side} its short side would be "
                               f"{min(W, H)} px (< {MIN_SIDE_PX}); raise --long-side or crop the image")
    return W, H, s


def _camera(cfg: InputConfig, w0: int, h0: int, sx: float, sy: float, W: int, H: int) -> tuple[np.ndarray, str]:
    if cfg.intrinsics is not None:  # finite and positive: checked by config.validate
        fx, fy, cx, cy = cfg.intrinsics
        if not (0 <= cx <= w0 and 0 <= cy <= h0):
            raise InputError(cfg.image, f"--intrinsics: principal point ({cx}, {cy}) lies outside the {w0}×{h0} "
                                        "image (intrinsics are in pixels of the original image)")
        return scale_intrinsics(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), sx, sy), "intrinsics"
    if cfg.fov_deg is not None:
        return intrinsics_from_fov(W, H, cfg.fov_deg), f"fov {cfg.fov_deg}°"
    warn(f"no --fov-deg or --intrinsics: assuming a {cfg.default_fov_deg}° field of view along the long side")
    return intrinsics_from_fov(W, H, cfg.default_fov_deg), f"assumed fov {cfg.default_fov_deg}° (fallback)"


def load_input_view(cfg: InputConfig) -> InputView:
    """Read, resize and validate the input; choose the depth source and say which."""
    if cfg.example == "motorcycle":
        rgb0, depth0, K0 = motorcycle_example()
        h0, w0 = rgb0.shape[:2]
        W, H, s = _working_size("skimage.data.stereo_motorcycle", w0, h0, cfg.long_side)
        sx, sy = W / w0, H / h0
        rgb = cv2.resize(rgb0, (W, H), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        depth = resize_depth_nearest(depth0, W, H)
        depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
        src = DepthSource("example-gt", "skimage.data.stereo_motorcycle", False,
                          "Middlebury 2014 GT disparity → Z = f·B/(d + doffs), metres; inf = hole")
        return InputView(rgb, depth, scale_intrinsics(K0, sx, sy), src, "Middlebury calibration",
                         _hash_arrays(rgb0, depth0))
    if cfg.image is None:
        raise InputError(None, "no input: give --image PATH, --panorama PATH, --pano-bank DIR or --example motorcycle")
    rgb0 = read_image(cfg.image)
    h0, w0 = rgb0.shape[:2]
    W, H, s = _working_size(cfg.image, w0, h0, cfg.long_side)
    sx, sy = W / w0, H / h0
    rgb = cv2.resize(rgb0, (W, H), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    K, cam_src = _camera(cfg, w0, h0, sx, sy, W, H)
    ident = [rgb0]
    if cfg.depth is not None:
        d0 = read_depth(cfg.depth)
        if d0.shape not in ((h0, w0), (H, W)):
            raise InputError(cfg.depth, f"depth shape {d0.shape} matches neither the image {(h0, w0)} nor the working size {(H, W)}")
        depth = resize_depth_nearest(d0, W, H) if d0.shape != (H, W) else d0
        depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
        src = DepthSource("file", str(Path(cfg.depth).absolute()), False, "metres")
        ident.append(d0)
    elif cfg.depth_model is not None:
        from worldstereo.depth.model import predict_depth

        depth = predict_depth(cfg.depth_model, rgb, cfg.depth_model_output, cfg.median_depth_m)
        src = DepthSource("model", str(Path(cfg.depth_model).absolute()), False,
                          f"{cfg.depth_model_output}; relative output scaled to median {cfg.median_depth_m} m")
        ident.append(depth)
    else:
        from worldstereo.depth.prior import planar_prior

        warn("no --depth or --depth-model: using the PLANAR PRIOR (floor + back wall, median "
             f"{cfg.median_depth_m} m). Geometry will be a rough guess; give a depth map for real results.")
        depth = planar_prior(H, W, K, cfg.median_depth_m)
        src = DepthSource("prior", None, True, f"planar prior: floor + back wall, median {cfg.median_depth_m} m")
    return InputView(rgb, depth, K, src, cam_src, _hash_arrays(*ident))


def write_prepared(scene: SceneDir, view: InputView, cache_cfg: CacheConfig) -> dict:
    """Write input/, the initial cache (cache/step_00.ply, copied to cache.ply) and the bank's input
    entry; returns SceneManifest fields."""
    H, W = view.depth_m.shape
    cam = Camera(view.K, np.eye(4), W, H)
    cache = points_from_view(view.rgb, view.depth_m, cam, 1.0, step=0, frame=0, edge_rel_thresh=cache_cfg.edge_rel_thresh)
    if len(cache) < 100:  # checked before the first write
        raise InputError(view.depth_source.path or scene.input_depth, "depth leaves fewer than 100 usable points for the cache")
    write_image(scene.input_image, view.rgb)
    atomic_save(scene.input_depth, lambda p: np.save(open(p, "wb"), view.depth_m))
    cache.save(scene.cache_step(0))
    atomic_copy(scene.cache_step(0), scene.cache_ply)
    bank = MemoryBank(scene.memory_bank)
    bank.entries = []
    bank.add(view.rgb, view.depth_m, cam, source="input", step=0, frame=0)
    bank.save()
    valid = view.depth_m > 0
    return {
        "input_kind": "image",
        "working_size": (W, H),
        "K": view.K.tolist(),
        "camera_source": view.camera_source,
        "depth_source": view.depth_source,
        "pivot_depth_m": float(np.median(view.depth_m[valid])),
        "valid_depth_fraction": float(valid.mean()),
        "cache_points": {"input": len(cache)},
        "voxel_m": float(cache_cfg.voxel_scale * np.median(cache.size)),
    }
