"""Smooth deformation fields in a frame's camera space: a trilinear control grid (default) and a
hash grid + small MLP (option, additive on top of the grid).

A frame i with camera-space points x [N, 3] is placed in the canonical world as

    X = A_i · (x + δ_i(x)),      δ_i(x) = Σ_k w_k(x) g_k  (+ δ_hash(x) when enabled)

where A_i [4, 4] is the frame's aligned camera-to-world (the given c2w times a rigid correction),
w_k(x) are the 8 trilinear weights of the cell holding x and g [R, R, R, 3] the node displacements.
δ is linear in g, so for fixed correspondences the alignment is a linear least-squares problem
(see icp.py). Points outside the grid's box use the displacement at the nearest box face.

>>> grid = ControlGrid.around(pts_cam, resolution=8)
>>> idx, w = grid.weights(pts_cam)          # [N, 8] node indices, [N, 8] weights
>>> moved = pts_cam + grid.displace(pts_cam)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.int64)  # [8, 3]


@dataclass
class HashFieldConfig:
    """The optional hash grid + MLP displacement (--deform.kind hashgrid), fitted by Adam per frame."""

    levels: int = 8
    """Hash grid levels (video_to_world: 16)."""
    features: int = 2
    """Features per level."""
    log2_table: int = 14
    """log2 of the hash table size per level (video_to_world: 19)."""
    base_res: int = 4
    """Coarsest hash grid resolution (video_to_world: 16)."""
    max_res: int = 64
    """Finest hash grid resolution (video_to_world: 2048)."""
    mlp_hidden: int = 32
    """Hidden width of the MLP after the hash encoding."""
    iters: int = 60
    """Adam steps per frame for the hash field."""
    lr: float = 3e-3
    """Adam learning rate for the hash field."""
    smoothness: float = 1e-2
    """Weight of the finite-difference curvature penalty on the hash field."""


@dataclass
class DeformConfig:
    """Per-frame deformation field (camera space)."""

    kind: Literal["grid", "hashgrid", "none"] = "grid"
    """grid: coarse trilinear control grid (linear least squares, CPU friendly). hashgrid: the grid
    plus a multiresolution hash grid + MLP fitted by Adam on top (tinycudann when CUDA is there).
    none: rigid only."""
    resolution: int = 6
    """Control-grid nodes per axis."""
    space: Literal["frustum", "xyz"] = "xyz"
    """Grid coordinates: frustum (x/z, y/z, z): cells follow the image, so image-smooth depth
    warps and scale drift (exactly) are cheap; xyz: an axis-aligned box in camera space."""
    margin: float = 0.05
    """Grid box = the frame's 1–99 % point extent grown by this fraction on each side."""
    smoothness: float = 1.0
    """Weight of the second-difference penalty on the grid (affine motions are free)."""
    damping: float = 1e-3
    """Weight of ‖g − g₀‖² (prefers the rigid twist over the grid for rigid motion)."""
    damp_to_scale: bool = True
    """g₀ = the scale field of the frame's initial Sim(3) from its matches (a depth scale error stays
    in the grid); False: g₀ = 0 (before issue 15: the damping traded scale for camera translation)."""
    hash: HashFieldConfig = field(default_factory=HashFieldConfig)
    """The hash grid + MLP of kind hashgrid (--deform.hash.*)."""


@dataclass
class ControlGrid:
    """Trilinear displacement grid over an axis-aligned box `lo`..`hi` (camera space)."""

    lo: np.ndarray  # [3]
    hi: np.ndarray  # [3]
    values: np.ndarray  # [R, R, R, 3] node displacements (camera-space metres)

    space: str = "xyz"  # grid coordinates: "xyz" (camera box) or "frustum" (x/z, y/z, z)
    _last: tuple | None = field(default=None, init=False, repr=False, compare=False)
    """(points array, idx, w) of the last `weights` call: ICP asks for the same frame's points every
    iteration (the box is fixed, only the values change)."""

    @staticmethod
    def around(pts: np.ndarray, resolution: int, margin: float = 0.05, space: str = "xyz") -> "ControlGrid":
        """A zero grid whose box holds the 1–99 % extent of `pts` [N, 3] (in grid coordinates),
        grown by `margin`."""
        c = to_grid_coords(pts, space)
        lo = np.percentile(c, 1, axis=0)
        hi = np.percentile(c, 99, axis=0)
        ext = np.maximum(hi - lo, 1e-6)
        pad = margin * ext + 1e-3 * np.abs(hi).max()
        r = max(int(resolution), 2)
        lo = lo - pad
        if space == "frustum":
            lo[2] = max(lo[2], 1e-3 * hi[2])
        return ControlGrid(lo, hi + pad, np.zeros((r, r, r, 3)), space)

    @property
    def resolution(self) -> int:
        return self.values.shape[0]

    @property
    def n_nodes(self) -> int:
        return self.resolution**3

    def node_positions(self) -> np.ndarray:
        """[R³, 3] node coordinates, flattened in the same (i, j, k) order as `values`."""
        r = self.resolution
        axes = [np.linspace(self.lo[d], self.hi[d], r) for d in range(3)]
        g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        return from_grid_coords(g, self.space)

    def weights(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat node indices [N, 8] and trilinear weights [N, 8] (rows sum to 1)."""
        if self._last is not None and self._last[0] is pts:
            return self._last[1], self._last[2]
        r = self.resolution
        f = (to_grid_coords(np.asarray(pts, np.float64), self.space) - self.lo) / (self.hi - self.lo) * (r - 1)
        f = np.clip(f, 0.0, r - 1 - 1e-9)
        base = np.floor(f).astype(np.int64)  # [N, 3]
        frac = f - base
        corner = base[:, None, :] + _CORNERS[None]  # [N, 8, 3]
        idx = (corner[..., 0] * r + corner[..., 1]) * r + corner[..., 2]
        w = np.prod(np.where(_CORNERS[None] == 1, frac[:, None, :], 1.0 - frac[:, None, :]), axis=-1)
        if isinstance(pts, np.ndarray) and not pts.flags.writeable:  # only arrays that cannot change
            self._last = (pts, idx, w)
        return idx, w

    def displace(self, pts: np.ndarray) -> np.ndarray:
        """δ(x) [N, 3]."""
        idx, w = self.weights(pts)
        flat = self.values.reshape(-1, 3)
        return np.einsum("nk,nkc->nc", w, flat[idx])

    def displace_torch(self, pts: torch.Tensor) -> torch.Tensor:
        """δ(x) [N, 3], differentiable w.r.t. `pts` (torch, same dtype as `pts`)."""
        r = self.resolution
        lo = torch.as_tensor(self.lo, dtype=pts.dtype, device=pts.device)
        hi = torch.as_tensor(self.hi, dtype=pts.dtype, device=pts.device)
        vals = torch.as_tensor(self.values.reshape(-1, 3), dtype=pts.dtype, device=pts.device)
        if self.space == "frustum":
            z = pts[:, 2:3].clamp(min=float(self.lo[2]) * 0.5)
            pts = torch.cat([pts[:, :2] / z, z], dim=1)
        f = ((pts - lo) / (hi - lo) * (r - 1)).clamp(0.0, r - 1 - 1e-6)
        base = torch.floor(f).detach().long()
        frac = f - base
        out = torch.zeros_like(pts)
        for c in _CORNERS:
            ct = torch.as_tensor(c, device=pts.device)
            node = base + ct
            idx = (node[:, 0] * r + node[:, 1]) * r + node[:, 2]
            w = torch.prod(torch.where(ct.bool(), frac, 1.0 - frac), dim=-1)
            out = out + w[:, None] * vals[idx]
        return out

    def smoothness_operator(self) -> sp.csr_matrix:
        """Sparse second differences along each axis, [rows, R³] (apply per xyz component).

        ‖L g‖² = Σ_axes Σ_nodes (g[n−e] − 2 g[n] + g[n+e])²; zero for any affine field.
        """
        r = self.resolution
        d2 = sp.diags([np.ones(r - 2), -2 * np.ones(r - 2), np.ones(r - 2)], [0, 1, 2], shape=(r - 2, r))
        eye = sp.identity(r)
        ops = [sp.kron(sp.kron(d2, eye), eye), sp.kron(sp.kron(eye, d2), eye), sp.kron(sp.kron(eye, eye), d2)]
        return sp.vstack(ops).tocsr()

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"lo": self.lo, "hi": self.hi, "values": self.values, "space": self.space}


def to_grid_coords(pts: np.ndarray, space: str) -> np.ndarray:
    """Camera xyz [N, 3] → grid coordinates: frustum (x/z, y/z, z) or unchanged."""
    if space == "xyz":
        return pts
    z = np.maximum(pts[:, 2:3], 1e-9)
    return np.concatenate([pts[:, :2] / z, z], axis=1)


def from_grid_coords(c: np.ndarray, space: str) -> np.ndarray:
    if space == "xyz":
        return c
    return np.concatenate([c[:, :2] * c[:, 2:3], c[:, 2:3]], axis=1)


def fit_grid_to_targets(grid: ControlGrid, src: np.ndarray, delta: np.ndarray, smoothness: float,
                        damping: float = 1e-6) -> ControlGrid:
    """Least-squares grid with δ(src) ≈ delta ([N, 3] each) plus λ‖L g‖² + μ‖g‖².

    Used to fit inverse deformations and to initialise a grid from a similarity transform.
    """
    idx, w = grid.weights(src)
    n = len(src)
    J = sp.csr_matrix((w.ravel(), idx.ravel(), np.arange(0, 8 * n + 1, 8)), shape=(n, grid.n_nodes))
    L = grid.smoothness_operator()
    H = (J.T @ J + smoothness * (L.T @ L) + damping * sp.identity(grid.n_nodes)).tocsc()
    rhs = J.T @ delta  # [R³, 3]
    sol = spla.splu(H).solve(np.ascontiguousarray(rhs))
    return ControlGrid(grid.lo.copy(), grid.hi.copy(), sol.reshape(grid.values.shape), grid.space)
