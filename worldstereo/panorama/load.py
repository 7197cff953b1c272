"""Reading a panorama input: a 2:1 equirect image (any size, resized to a working width) and,
optionally, its distance map; bad files fail with one line (errors.InputError)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldstereo.errors import InputError
from worldstereo.io.images import read_depth, read_image
from worldstereo.panorama.equirect import is_equirect_shape
from worldstereo.panorama.sampling import RipMap, sample, sample_nearest


@dataclass
class PanoramaInput:
    """An equirect panorama at working size (world frame and pixel convention: equirect.py)."""

    rgb: np.ndarray  # [H, W, 3] uint8, W = 2H
    distance_m: np.ndarray | None  # [H, W] float32 distance along each ray (not z), 0 = unknown
    image_path: Path
    depth_path: Path | None
    original_size: tuple[int, int]  # (width, height) of the image file
    source_id: str  # content hash of the inputs (for stage hashes)

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def resize_equirect(img: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """Resize an equirect (the seam and the poles wrap): box-prefiltered when shrinking (see
    sampling.py), bilinear when enlarging, nearest for depth (never blends across depth edges)."""
    h0, w0 = img.shape[:2]
    if (w0, h0) == (width, height):
        return img
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    map_u = (u + 0.5) * np.float32(w0 / width) - 0.5
    map_v = (v + 0.5) * np.float32(h0 / height) - 0.5
    if nearest:
        return sample_nearest(img, map_u, map_v, "equirect")
    out = sample(RipMap(img, "equirect"), map_u, map_v)
    return np.clip(np.round(out), 0, 255).astype(np.uint8) if img.dtype == np.uint8 else out.astype(img.dtype)


def load_panorama_view(image_path: str | Path, depth_path: str | Path | None = None,
                       working_width: int = 2048) -> PanoramaInput:
    """Read an equirect image (+ distance map: .npy metres, 16-bit .png millimetres, float .tif)
    and bring both to `working_width` × `working_width / 2`.

    Errors (InputError, one line): the image is not 2:1 (±1 pixel); the depth map is neither
    the image's size nor the working size; the depth has NaN or negative values (read_depth).
    0 distances are holes; NaN and inf are errors (read_depth).
    """
    image_path = Path(image_path)
    if working_width < 16 or working_width % 2:
        raise InputError(None, f"panorama working width must be an even number ≥ 16, got {working_width}")
    rgb0 = read_image(image_path)
    h0, w0 = rgb0.shape[:2]
    if not is_equirect_shape(h0, w0):
        raise InputError(image_path, f"not an equirectangular panorama: {w0}x{h0} is not 2:1 (width = 2 x height)")
    W, H = working_width, working_width // 2
    rgb = resize_equirect(rgb0, W, H)
    ident = [rgb0]
    distance = None
    dpath = None if depth_path is None else Path(depth_path)
    if dpath is not None:
        d0 = read_depth(dpath)
        if d0.shape not in ((h0, w0), (H, W)):
            raise InputError(dpath, f"depth is {d0.shape[1]}x{d0.shape[0]}, matching neither the panorama "
                                    f"{w0}x{h0} nor the working size {W}x{H}")
        d = resize_equirect(d0, W, H, nearest=True)  # nearest: never blend across depth edges
        distance = np.where(np.isfinite(d), d, 0.0).astype(np.float32)
        ident.append(d0)
    h = hashlib.sha1()
    for a in ident:
        h.update(np.ascontiguousarray(a).tobytes())
    return PanoramaInput(rgb, distance, image_path, dpath, (w0, h0), h.hexdigest()[:16])
