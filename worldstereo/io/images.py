"""Image and depth-map files: read with one-line errors, write atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # decoder WARN lines would break our one-line errors


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 [H, W, 3] (grey and RGBA are converted; 16-bit is scaled to 8-bit)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "image not found")
    if path.is_dir():
        raise InputError(path, "is a folder, expected an image file")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(path, "not a readable image (png/jpg expected)")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    if img.dtype != np.uint8:
        raise InputError(path, f"unsupported image dtype {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 (or grey) image atomically; format from the suffix."""
    path = Path(path)
    arr = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(path.suffix or ".png", arr)
        if not ok:
            raise OSError(f"could not encode {path}")
        tmp.write_bytes(buf.tobytes())


def read_depth(path: str | Path) -> np.ndarray:
    """Depth in metres, float32 [H, W]: .npy (metres), 16-bit .png (millimetres), float .tif/.tiff
    (metres). 0 marks unknown depth; NaN, inf, negative values and integer .npy / .tif are errors."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "depth file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            depth = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise InputError(path, "not a readable png")
            if raw.dtype != np.uint16 or raw.ndim != 2:
                raise InputError(path, "depth png must be single-channel 16-bit (millimetres)")
            depth = raw.astype(np.float32) / 1000.0
        elif suffix in (".tif", ".tiff"):
            import tifffile

            depth = tifffile.imread(path)
        else:
            raise InputError(path, f"unknown depth format {suffix!r} (use .npy, 16-bit .png in mm, or float .tif)")
    except InputError:
        raise
    except Exception as e:  # any decoder failure is the file's problem, said in one line
        raise InputError(path, f"cannot read depth ({e.__class__.__name__}: {e})")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise InputError(path, f"depth must be a 2D array (H, W), got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.number):
        raise InputError(path, f"depth has non-numeric dtype {depth.dtype}")
    if suffix != ".png" and not np.issubdtype(depth.dtype, np.floating):
        # an integer array is almost always millimetres (sensor or 16-bit export), read as metres it is 1000× off
        raise InputError(path, f"depth has integer dtype {depth.dtype}: give metres as floats "
                               "(millimetres: divide by 1000, or save a 16-bit .png)")
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all():
        nan, inf = int(np.isnan(depth).sum()), int(np.isinf(depth).sum())
        raise InputError(path, f"depth contains {nan} NaN and {inf} inf values: mark unknown depth with 0")
    if (depth < 0).any():
        raise InputError(path, f"depth contains {int((depth < 0).sum())} negative values")
    valid = np.isfinite(depth) & (depth > 0)
    if valid.mean() < 0.01:
        raise InputError(path, "depth has almost no valid (finite, positive) pixels")
    return depth


def resize_depth_nearest(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize: never blends foreground and background depth across an edge."""
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def resize_images(frames: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """RGB uint8 [N, height, width, 3] of frames [H, W, 3|4] (area interpolation; same-size frames kept)."""
    out = [f if f.shape[:2] == (height, width) else cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
           for f in frames]
    return np.stack([o[..., :3] for o in out]).astype(np.uint8)
