"""exports/npz/results.npz: all frames in the DA3 / video_to_world schema, typed and validated.

Keys (N frames of H×W):
    depth       (N, H, W)    float32   z-depth, metres where known, 0 = unknown
    conf        (N, H, W)    float32   confidence ≥ 0
    extrinsics  (N, 3, 4)    float32   w2c (OpenCV axes)
    intrinsics  (N, 3, 3)    float32   K in pixels
    image       (N, H, W, 3) uint8     RGB
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldstereo.errors import InputError
from worldstereo.geometry import w2c_to_c2w
from worldstereo.io.atomic import atomic_path

RESULTS_KEYS: dict[str, str] = {
    "depth": "float32",
    "conf": "float32",
    "extrinsics": "float32",
    "intrinsics": "float32",
    "image": "uint8",
}


@dataclass
class FrameResults:
    """All frames of a scene; `extrinsics_w2c` [N, 3, 4], `K` [N, 3, 3]."""

    depth: np.ndarray
    conf: np.ndarray
    extrinsics_w2c: np.ndarray
    K: np.ndarray
    image: np.ndarray

    def __len__(self) -> int:
        return len(self.depth)

    def c2w(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world."""
        return w2c_to_c2w(self.extrinsics_w2c)

    def subset(self, idx) -> "FrameResults":
        return FrameResults(self.depth[idx], self.conf[idx], self.extrinsics_w2c[idx], self.K[idx], self.image[idx])


def save_results(path: str | Path, r: FrameResults) -> None:
    arrays = {
        "depth": r.depth.astype(np.float32),
        "conf": r.conf.astype(np.float32),
        "extrinsics": r.extrinsics_w2c.astype(np.float32),
        "intrinsics": r.K.astype(np.float32),
        "image": r.image.astype(np.uint8),
    }
    validate_arrays(path, arrays)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object keeps numpy from appending .npz to the temp name
            np.savez(f, **arrays)


def validate_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """One-line InputError naming the first key with a wrong presence, dtype or shape."""
    for key, dtype in RESULTS_KEYS.items():
        if key not in arrays:
            raise InputError(path, f"missing key '{key}' (results.npz needs {', '.join(RESULTS_KEYS)})")
        if str(arrays[key].dtype) != dtype:
            raise InputError(path, f"key '{key}' has dtype {arrays[key].dtype}, expected {dtype}")
    N, H, W = arrays["depth"].shape if arrays["depth"].ndim == 3 else (None, None, None)
    if N is None:
        raise InputError(path, f"key 'depth' has shape {arrays['depth'].shape}, expected (N, H, W)")
    expected = {
        "conf": (N, H, W),
        "extrinsics": (N, 3, 4),
        "intrinsics": (N, 3, 3),
        "image": (N, H, W, 3),
    }
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise InputError(path, f"key '{key}' has shape {arrays[key].shape}, expected {shape}")
    if N == 0:
        raise InputError(path, "results.npz holds no frames")
    _validate_cameras(path, arrays["extrinsics"], arrays["intrinsics"])


def _validate_cameras(path: str | Path, w2c: np.ndarray, K: np.ndarray) -> None:
    """Finite rigid w2c and finite K with positive focal lengths, per frame (first bad frame named)."""
    bad = np.flatnonzero(~np.isfinite(w2c).all(axis=(1, 2)))
    if bad.size:
        raise InputError(path, f"frame {bad[0]}: extrinsics contain NaN or inf")
    R = w2c[:, :3, :3].astype(np.float64)
    err = np.abs(R @ np.transpose(R, (0, 2, 1)) - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((err > 1e-3) | (np.linalg.det(R) <= 0))
    if bad.size:
        raise InputError(path, f"frame {bad[0]}: extrinsics are not a rigid w2c transform (rotation part not orthonormal)")
    bad = np.flatnonzero(~np.isfinite(K).all(axis=(1, 2)) | (K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0))
    if bad.size:
        raise InputError(path, f"frame {bad[0]}: intrinsics need finite values and positive focal lengths "
                               f"(fx={K[bad[0], 0, 0]}, fy={K[bad[0], 1, 1]})")


def load_results(path: str | Path) -> FrameResults:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(path, "file not found")
    except (OSError, ValueError, EOFError) as e:
        raise InputError(path, f"not a readable .npz file ({e.__class__.__name__})")
    except Exception as e:  # zipfile.BadZipFile and friends: a truncated or foreign file, said in one line
        raise InputError(path, f"not a readable .npz file ({e.__class__.__name__}: {e})")
    validate_arrays(path, arrays)
    return FrameResults(arrays["depth"], arrays["conf"], arrays["extrinsics"], arrays["intrinsics"], arrays["image"])
