"""Inverse deformation: canonical world → each frame's camera space, fitted, checked, loaded.

Forward (icp.py):   X = A_i (x + δ_i(x))                x: frame i camera space, X: canonical world
Inverse (here):     x ≈ y + δ'_i(y),  y = A_i⁻¹ X       δ'_i: a control grid over y, fitted by linear
                    least squares to samples (x, y = x + δ_i(x)) of the forward field's box
Round trip:         ‖x − (y + δ'_i(y))‖ on the frame's own points, reported relative to the scene
                    scale (median depth of the first aligned frame) in align/metrics.json.

`load_inverse_deformations(scene_root)` returns `warp(frame_idx, means)`: canonical Gaussian
centres [N, 3] → their placement in the world of frame `frame_idx` as given by results.npz,
c2w_given · x, so a renderer using the given camera of that frame sees them where that frame's
(inconsistent) image shows them. Differentiable w.r.t. `means`.

>>> warp = load_inverse_deformations("scenes/my")
>>> warp.frame_indices            # original results.npz indices that were aligned
>>> means_i = warp(4, means)      # [N, 3] torch, grad flows to means
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldstereo.align.deform import ControlGrid, fit_grid_to_targets
from worldstereo.align.icp import FrameState
from worldstereo.align.preprocess import FramePoints
from worldstereo.errors import InputError

DEFORMATIONS_FILE = "deformations.npz"


@dataclass
class InverseConfig:
    """Fit of the canonical → frame map."""

    resolution: int = 10
    """Inverse control-grid nodes per axis."""
    samples_per_axis: int = 14
    """Lattice samples of the forward box per axis (plus the frame's own points)."""
    smoothness: float = 1e-4
    """Second-difference penalty of the inverse grid (small: the fit is data-dominated)."""
    tolerance: float = 1e-3
    """Round-trip error (p95, fraction of the scene scale) above which a warning is printed."""


@dataclass
class InverseField:
    """Inverse map of one frame: y = A⁻¹ X, x = y + δ'(y), world_i = c2w_given x."""

    index: int
    A: np.ndarray  # [4, 4] aligned c2w
    c2w_given: np.ndarray  # [4, 4]
    grid: ControlGrid | None


@dataclass
class RoundTripStats:
    """‖x − x̂‖ of one frame's held-out points after x → X → x̂, as fractions of the scene scale."""

    frame: int
    median: float
    p95: float
    max: float


def fit_inverse(frame: FramePoints, state: FrameState, cfg: InverseConfig,
                scale: float) -> tuple[InverseField, RoundTripStats]:
    """Fit δ' for one frame and measure the round trip x → X → x̂ on the frame's points."""
    if state.grid is None and state.hash_field is None:
        return InverseField(frame.index, state.A, frame.c2w_given, None), RoundTripStats(frame.index, 0.0, 0.0, 0.0)
    lo, hi = (state.grid.lo, state.grid.hi) if state.grid is not None else (frame.xyz.min(0), frame.xyz.max(0))
    axes = [np.linspace(lo[d], hi[d], cfg.samples_per_axis) for d in range(3)]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(frame.index)
    own = frame.xyz[rng.permutation(len(frame.xyz))]
    fit_pts, check_pts = own[: len(own) // 2], own[len(own) // 2:]
    x = np.concatenate([lattice, fit_pts])
    y = state.camera_deformed(x)
    grid = ControlGrid.around(y, cfg.resolution, margin=0.05)
    grid = fit_grid_to_targets(grid, y, x - y, cfg.smoothness * len(x) / grid.n_nodes)
    yc = state.camera_deformed(check_pts)
    err = np.linalg.norm(yc + grid.displace(yc) - check_pts, axis=1) / scale
    stats = RoundTripStats(frame.index, float(np.median(err)), float(np.percentile(err, 95)), float(err.max()))
    return InverseField(frame.index, state.A, frame.c2w_given, grid), stats


def save_deformations(path: Path, frames: list[FramePoints], states: list[FrameState],
                      inverses: list[InverseField], scale: float, rejected: list[int] = ()) -> None:
    """align/deformations.npz: forward and inverse parameters of every aligned frame (one file);
    `rejected` (positions in frames) are flagged: their alignment failed and no reader should warp
    through them."""
    F = len(frames)
    r = max((s.grid.resolution for s in states if s.grid is not None), default=2)
    ri = max((v.grid.resolution for v in inverses if v.grid is not None), default=2)
    out = {
        "frame_index": np.array([f.index for f in frames], np.int64),
        "c2w_given": np.stack([f.c2w_given for f in frames]),
        "c2w_aligned": np.stack([s.A for s in states]),
        "has_grid": np.array([s.grid is not None for s in states]),
        "grid_lo": np.zeros((F, 3)), "grid_hi": np.ones((F, 3)), "grid_values": np.zeros((F, r, r, r, 3)),
        "has_inverse": np.array([v.grid is not None for v in inverses]),
        "inv_lo": np.zeros((F, 3)), "inv_hi": np.ones((F, 3)), "inv_values": np.zeros((F, ri, ri, ri, 3)),
        "scale": np.float64(scale),
        "rejected": np.isin(np.arange(F), list(rejected)),
    }
    for k, (s, v) in enumerate(zip(states, inverses)):
        if s.grid is not None:
            out["grid_lo"][k], out["grid_hi"][k], out["grid_values"][k] = s.grid.lo, s.grid.hi, s.grid.values
        if v.grid is not None:
            out["inv_lo"][k], out["inv_hi"][k], out["inv_values"][k] = v.grid.lo, v.grid.hi, v.grid.values
    from worldstereo.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **out)


class InverseWarp:
    """Callable `warp(frame_idx, means [N, 3]) -> [N, 3]` (torch, differentiable)."""

    def __init__(self, fields: dict[int, InverseField], scale: float):
        self.fields = fields
        self.scale = scale

    @property
    def frame_indices(self) -> list[int]:
        return sorted(self.fields)

    def c2w_given(self, frame_idx: int) -> np.ndarray:
        return self._field(frame_idx).c2w_given

    def _field(self, frame_idx: int) -> InverseField:
        try:
            return self.fields[int(frame_idx)]
        except KeyError:
            raise KeyError(f"frame {frame_idx} was not aligned; aligned frames: {self.frame_indices}") from None

    def to_camera(self, frame_idx: int, means: torch.Tensor) -> torch.Tensor:
        """Canonical world [N, 3] → frame camera space x [N, 3]."""
        f = self._field(frame_idx)
        A_inv = torch.as_tensor(np.linalg.inv(f.A), dtype=means.dtype, device=means.device)
        y = means @ A_inv[:3, :3].T + A_inv[:3, 3]
        return y if f.grid is None else y + f.grid.displace_torch(y)

    def __call__(self, frame_idx: int, means: torch.Tensor) -> torch.Tensor:
        f = self._field(frame_idx)
        x = self.to_camera(frame_idx, means)
        T = torch.as_tensor(f.c2w_given, dtype=means.dtype, device=means.device)
        return x @ T[:3, :3].T + T[:3, 3]


def load_inverse_deformations(scene_root: str | Path) -> InverseWarp:
    """Read <scene>/align/deformations.npz (written by reconstruct.py) into an `InverseWarp`.

    warp(frame_idx, means): frame_idx is the original results.npz frame index (offset and stride
    included); means [N, 3] canonical world (torch, any float dtype/device); returns [N, 3]
    positions in that frame's world placement (its given c2w), differentiable w.r.t. means.
    Frames whose alignment failed (flagged `rejected`) are left out: their deformation bent bad
    depth onto the model and is no warp to train through, so `frame_indices` does not list them.
    """
    path = Path(scene_root) / "align" / DEFORMATIONS_FILE
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "no inverse deformations: run reconstruct.py on this scene first")
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable deformations file ({e.__class__.__name__}): rerun reconstruct.py")
    with z:
        for key in ("frame_index", "c2w_given", "c2w_aligned", "has_inverse", "inv_lo", "inv_hi", "inv_values"):
            if key not in z.files:
                raise InputError(path, f"missing key '{key}': rerun reconstruct.py")
        fields = {}
        rejected = z["rejected"] if "rejected" in z.files else np.zeros(len(z["frame_index"]), bool)
        for k, idx in enumerate(z["frame_index"]):
            if rejected[k]:
                continue
            grid = ControlGrid(z["inv_lo"][k], z["inv_hi"][k], z["inv_values"][k]) if z["has_inverse"][k] else None
            fields[int(idx)] = InverseField(int(idx), z["c2w_aligned"][k], z["c2w_given"][k], grid)
        scale = float(z["scale"]) if "scale" in z.files else 1.0
    return InverseWarp(fields, scale)
