"""Frame-to-model non-rigid ICP (sequential; frame 0 fixes the gauge).

Each frame i is placed as X = A_i · (x + δ_i(x)) (deform.py). With correspondences fixed, X is
linear in the grid values g and (after linearising the rigid increment exp(ω)·(X − c) + c + v) in
the twist (ω, v), so one ICP iteration is a sparse Gauss–Newton solve of

    E = Σ_p ρ(n_q·(X_p − q_p))² / P              point-to-plane to the model's nearest neighbour
      + λ_c Σ_m ρ(‖P_m (X_m − Y_m)‖)² / M         dense 2D correspondences (optical flow / SIFT); P_m
                                                   projects across the frame's ray through x_m (bearing:
                                                   depth errors move points along their rays) or is I
      + λ_a Σ_m ‖X_m − X_m^anchor‖² / M           anchor (global optimisation only)
      + λ_s ‖L g‖² + μ ‖g − g₀‖²                   smoothness (2nd differences) + damping towards g₀
                                                   (the matches' scale field, else 0)

with ρ a Huber weight at 1.345 × the MAD scale, pairs beyond a shrinking cutoff rejected, and a
colour weight exp(−‖c_p − c_q‖² / 2σ²) on each nearest-neighbour pair. Iterations stop early when
the update is below `tol`. The optional hash field (deform.kind = hashgrid) is then fitted by Adam
on top, with an added colour loss (model colour interpolated at X). With corr.residual = guarded (the
default) a few bearing iterations follow, kept only where the point-to-plane residual holds
(`bearing_polish`).

Aligned frames are merged into a `VoxelModel` (voxel_model.py); a frame with too few points near
the model after alignment is rejected (not merged, `AlignResult.rejected`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Literal

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import cho_factor, cho_solve
from scipy.spatial.transform import Rotation

from worldstereo.align.bundle import BundleConfig
from worldstereo.align.deform import ControlGrid, DeformConfig
from worldstereo.align.drift import DriftConfig
from worldstereo.align.fuse import FuseConfig
from worldstereo.align.matching import pixel_matches, view_distance
from worldstereo.align.preprocess import FramePoints, surface_pixels
from worldstereo.align.voxel_model import Contribution, VoxelModel
from worldstereo.errors import InputError
from worldstereo.geometry import robust_umeyama, skew, unproject_depth


@dataclass
class CorrespondenceConfig:
    """Dense 2D matches of a frame to earlier aligned frames (the λ_c term)."""

    method: Literal["flow", "sift", "none"] = "flow"
    """OpenCV DIS optical flow, SIFT, or none."""
    frames: int = 2
    """Match against this many earlier (aligned) frames."""
    flow_finest_scale: int = 0
    """Finest pyramid level of the DIS flow: 0 = the images' own resolution; 1 = half (OpenCV's medium
    preset, the default before the sixth pass on issue 15). On the harder benchmark's frames (128 × 96)
    level 0 cut the flow's median error against the exact matches on room7's pairs (median over the
    pairs 0.18 → 0.07 px; one failed pair 12.8 → 0.6 px) and raised F on all twelve cases
    (BENCHMARKS.md, issue 15). It costs ~4× per flow (DIS at 832 × 480: 38 → 145 ms, one thread)."""
    guided: bool = True
    """Also match each frame against every reference warped into the frame's predicted camera (its
    given pose carried by the drift so far; `warp_into`), which removes most of the parallax of
    close surfaces that plain flow fails on; both sets are used. On the harder benchmark's cluttered
    sweeps it halved the flow's wrong matches (BENCHMARKS.md, issue 15); it costs a second flow per
    reference. Sequential pass only (the global optimisation's sweeps use plain flow), and flow only.
    Where the reference sees a surface behind one the frame sees, the warp shows the hidden one and
    some guided matches are wrong; dropping those by a depth test raised the right fraction of an
    isolated pair (0.41 → 0.59) but lowered F on both cluttered sweeps (0.673 → 0.655, 0.602 →
    0.571), so it is not done."""
    refs: Literal["nearest", "recent"] = "nearest"
    """Which earlier accepted frames: nearest = those whose given cameras are closest (centre
    distance / scene scale + angle between the optical axes in radians), so a path that comes back
    is matched against where it was and a frame after rejected ones against the last good views
    that overlap it; recent = the last accepted ones. On a forward, orbit or sweep path the nearest
    are usually the most recent (BENCHMARKS.md, issue 15)."""
    points: int = 4000
    """At most this many matched pixels per frame pair."""
    weight: float = 1.0
    """λ_c of the correspondence term at the first iteration."""
    weight_final: float = 1e-4
    """λ_c once the cutoff has shrunk (matches are ~1 px accurate; point-to-plane is finer)."""
    cutoff: float = 0.1
    """Reject correspondences farther than this (after the initial similarity fit)."""
    min_weight: float = 1e-3
    """Leave the match rows out of an iteration once λ_c is below this (3 rows per match that no
    longer move the solution: most of the solve's cost in the late iterations)."""
    residual: Literal["point", "bearing", "guarded"] = "guarded"
    """point: the full 3D difference X_m − Y_m (3 rows per match), λ_c falling from weight to
    weight_final. bearing: only its part across the frame's ray through the match (2 rows), λ_c
    falling from bearing_weight to bearing_weight_final: a depth error moves a point along its ray,
    so this part carries the camera's bearing and does not fight the depth warp. bearing alone
    misplaces frames where the flow is partly wrong (few frames, large motion). guarded: point,
    then `polish_iters` bearing iterations kept only where the point-to-plane residual stays close
    (`bearing_polish`); on the harder benchmark it halves the refined cameras' RotErr and ATE on
    two of four cases (F 0.01–0.03 lower) and leaves the exact few-frame cases exact (BENCHMARKS.md,
    issue 15)."""
    polish_iters: int = 5
    """Bearing iterations of the guarded step (at the final cutoff; 10 measured mixed, not better)."""
    polish_max_ratio: float = 2.0
    """The guarded step is kept when its median point-to-plane residual is at most this × the point
    solution's (+ polish_slack × scene scale); measured ≤ 1.4 × on the benchmark where the flow is
    right, ≥ 7 × this threshold on the exact few-frame cases where it is not."""
    polish_slack: float = 1e-4
    """Absolute allowance of that test, a fraction of the scene scale (exact frames have ~1e-5)."""
    bearing_weight: float = 1.0
    """λ_c of the bearing residual at the first iteration."""
    bearing_weight_final: float = 0.1
    """λ_c of the bearing residual once the cutoff has shrunk (geometric in between)."""


@dataclass
class ICPConfig:
    """Frame-to-model ICP. Distances are fractions of the scene scale (median depth of frame 0)."""

    max_iters: int = 25
    """Gauss–Newton iterations per frame (upper bound)."""
    min_iters: int = 4
    """Iterations before early stopping may trigger."""
    tol: float = 1e-5
    """Early stop when the largest update (rad, or scene-scale fraction) is below this."""
    max_dist_init: float = 0.08
    """Nearest-neighbour cutoff at the first iteration."""
    max_dist_final: float = 0.015
    """Cutoff reached halfway through the iterations and kept."""
    normal_cos: float = 0.5
    """Reject pairs whose normals differ by more than acos(normal_cos)."""
    voxel: float = 0.004
    """Model voxel size for the confidence-weighted merge."""
    colour_weight: float = 0.5
    """Mix of the colour agreement weight on nearest-neighbour pairs (0 = off)."""
    colour_sigma: float = 0.15
    """Colour difference scale (RGB in [0, 1])."""
    corr: CorrespondenceConfig = field(default_factory=CorrespondenceConfig)
    """Dense 2D correspondences (--icp.corr.*)."""
    init_from_matches: bool = True
    """Start each frame from a robust Sim(3) fit of its matches (scale goes into the grid)."""
    gn_points: int = 6000
    """Point-to-plane pairs used per Gauss–Newton iteration (a fresh random subset each time)."""
    pose_damping: float = 1e-6
    """Levenberg damping on the twist."""
    centre_prior: float = 0.1
    """Strength κ_c of a prior pulling each frame's rigid placement (the centre of A) towards its
    given camera's centre: κ_c · σ_r² · (‖Δc‖ / (centre_prior_sigma · scale))² is added to the
    frame's energy, σ_r being the robust scale (1.4826 × median) of its point-to-plane residuals
    in that iteration. The data terms are weighted means of squared residuals, ~σ_r², so the prior
    weighs like κ_c of the data where the centre is one σ_c off: where the data fix the centre it
    barely moves, and on clean data (σ_r → 0) it vanishes; where they do not (a far wall, on which
    a sideways shift and a turn look alike) the given centre breaks the tie. 0 = off
    (BENCHMARKS.md, issue 15)."""
    centre_prior_sigma: float = 0.035
    """The given cameras' centre error the prior assumes (fraction of the scene scale)."""
    rotation_prior: float = 0.0
    """κ_r: the same for the rotation, with (θ / rotation_prior_deg)² in place of the centre term
    (θ: the angle between A's rotation and the given camera's). Off by default: added to the centre
    prior on the harder benchmark it lowered F on the orbits (BENCHMARKS.md, issue 15)."""
    rotation_prior_deg: float = 2.0
    """The given cameras' rotation error the rotation prior assumes (degrees)."""
    seed: int = 0
    """Seed of random subsampling."""
    reject_inlier_frac: float = 0.2
    """A frame (not frame 0) whose aligned points lie within the final cutoff of the model for less
    than this fraction is rejected as failed: not merged, not matched against, listed in metrics.json."""
    reject_match_frac: float = 0.3
    """…or whose dense matches agree with one Sim(3) (within 10 % of depth) for less than this
    fraction (random depth bent onto the model by the grid can pass the first test, not this one)."""
    reject_worse: bool = True
    """A frame whose aligned points end farther from the model than at its given pose (median over
    all points of the point-to-plane distance capped at the initial cutoff, a point with no model
    point within it counting as the cutoff: `truncated_score`) is aligned again on geometry alone
    from its carried pose (wrong matches are the likely cause), the better of the two kept; if that
    is still worse than the given pose, the frame is rejected (BENCHMARKS.md, issue 15). The match
    agreement test still applies to a frame so re-aligned (it is what finds random depth)."""
    worse_margin: float = 1e-3
    """Worse means worse by more than this fraction of the scene scale (a quarter voxel): on input
    that is already consistent the given pose is exact and the solver stops ~1e-5 short of it."""
    fuse: FuseConfig = field(default_factory=FuseConfig)
    """Support filter of the canonical cloud (--icp.fuse.*, align/fuse.py)."""
    bundle: BundleConfig = field(default_factory=BundleConfig)
    """Bundle adjustment of the refined cameras on dense matches between accepted frames, before the
    drift correction (--icp.bundle.*, align/bundle.py)."""
    drift: DriftConfig = field(default_factory=DriftConfig)
    """Drift correction of the refined cameras and placements towards the given cameras
    (--icp.drift.*, align/drift.py)."""


# --------------------------------------------------------------------------- per-frame state


@dataclass
class FrameState:
    """Alignment of one frame: aligned c2w `A` [4, 4], control grid, optional hash field."""

    A: np.ndarray
    grid: ControlGrid | None
    hash_field: torch.nn.Module | None = None
    rest: np.ndarray | None = None  # grid values the damping pulls towards (the matches' scale field), else 0

    def copy(self) -> "FrameState":
        g = None if self.grid is None else ControlGrid(self.grid.lo.copy(), self.grid.hi.copy(), self.grid.values.copy(), self.grid.space)
        return FrameState(self.A.copy(), g, self.hash_field, None if self.rest is None else self.rest.copy())

    def base(self, x: np.ndarray) -> np.ndarray:
        """x + δ_hash(x) [N, 3] (the part the grid solve keeps fixed)."""
        if self.hash_field is None:
            return x
        with torch.no_grad():
            x32 = torch.from_numpy(np.asarray(x, np.float32).copy())  # a frame's points are read-only
            return x + self.hash_field(x32).double().numpy()

    def camera_deformed(self, x: np.ndarray) -> np.ndarray:
        """x + δ(x) [N, 3], still in the frame's camera space."""
        y = self.base(x)
        return y if self.grid is None else y + self.grid.displace(x)

    def world(self, x: np.ndarray) -> np.ndarray:
        """X = A (x + δ(x)) [N, 3]."""
        return self.camera_deformed(x) @ self.A[:3, :3].T + self.A[:3, 3]


def new_state(frame: FramePoints, deform: DeformConfig) -> FrameState:
    grid = None if deform.kind == "none" else ControlGrid.around(frame.xyz, deform.resolution, deform.margin, deform.space)
    return FrameState(frame.c2w_given.copy(), grid)


# --------------------------------------------------------------------------- dense correspondences


@dataclass
class Matches:
    """Camera-space points of the frame being aligned and their world-space targets."""

    x: np.ndarray  # [M, 3] camera space
    Y: np.ndarray  # [M, 3] world
    w: np.ndarray  # [M]

    @staticmethod
    def empty() -> "Matches":
        return Matches(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.x)

    @staticmethod
    def cat(ms: list["Matches"]) -> "Matches":
        ms = [m for m in ms if len(m)]
        if not ms:
            return Matches.empty()
        return Matches(np.concatenate([m.x for m in ms]), np.concatenate([m.Y for m in ms]), np.concatenate([m.w for m in ms]))


def world_pointmap(frame: FramePoints, state: FrameState, max_jump: float) -> np.ndarray:
    """Aligned world positions [H, W, 3] of a frame's surface pixels (NaN elsewhere)."""
    pts = unproject_depth(frame.depth, frame.K)
    ok = surface_pixels(frame.depth, max_jump)
    out = np.full(pts.shape, np.nan)
    out[ok] = state.world(pts[ok])
    return out


def warp_into(ref_image: np.ndarray, ref_map: np.ndarray, c2w: np.ndarray, K: np.ndarray,
              fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An earlier frame seen from camera c2w: its aligned points (ref_map [H, W, 3], NaN = none)
    splatted with a z-buffer (2 × 2 pixels each, nearest wins) → (image [H, W, 3] uint8, holes
    from `fill`; source pixel [H, W, 2] of each warped pixel, NaN in holes)."""
    H, W = fill.shape[:2]
    ok = np.all(np.isfinite(ref_map), axis=2)
    v, u = np.nonzero(ok)
    w2c = np.linalg.inv(c2w)
    p = ref_map[v, u] @ w2c[:3, :3].T + w2c[:3, 3]
    front = p[:, 2] > 1e-9
    u, v, p = u[front], v[front], p[front]
    x = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
    y = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
    tu = np.concatenate([np.floor(x) + du for du in (0, 1) for _ in (0, 1)]).astype(np.int64)
    tv = np.concatenate([np.floor(y) + dv for _ in (0, 1) for dv in (0, 1)]).astype(np.int64)
    z, su, sv = (np.tile(a, 4) for a in (p[:, 2], u, v))
    inside = (tu >= 0) & (tu < W) & (tv >= 0) & (tv < H)
    target, z, su, sv = tv[inside] * W + tu[inside], z[inside], su[inside], sv[inside]
    order = np.lexsort((z, target))  # by target pixel, nearest first
    first = order[np.unique(target[order], return_index=True)[1]]
    image = fill.copy().reshape(-1, 3)
    src = np.full((H * W, 2), np.nan)
    image[target[first]] = ref_image[sv[first], su[first]]
    src[target[first]] = np.stack([su[first], sv[first]], 1)
    return image.reshape(H, W, 3), src.reshape(H, W, 2)


def frame_matches(frame: FramePoints, ref: FramePoints, ref_map: np.ndarray, cfg: ICPConfig,
                  rng: np.random.Generator, c2w_pred: np.ndarray | None = None) -> Matches:
    """Matches of frame's sampled points to the aligned point map of an earlier frame. With
    c2w_pred (the frame's predicted camera) and corr.guided, also matched against the earlier frame
    warped into that camera (parallax of close surfaces removed), the two sets concatenated."""
    sel = rng.choice(len(frame.xyz), min(cfg.corr.points, len(frame.xyz)), replace=False)
    out = []
    pb, rows = pixel_matches(frame.image, ref.image, frame.pix[sel], cfg.corr.method, cfg.corr.flow_finest_scale)
    if len(rows):
        rb = np.round(pb).astype(np.int64)
        out.append((rows, ref_map[rb[:, 1], rb[:, 0]]))
    if cfg.corr.guided and c2w_pred is not None and cfg.corr.method == "flow":
        warped, src = warp_into(ref.image, ref_map, c2w_pred, frame.K, frame.image)
        q, rows_w = pixel_matches(frame.image, warped, frame.pix[sel], "flow", cfg.corr.flow_finest_scale)
        rq = np.round(q).astype(np.int64)
        sq = src[rq[:, 1], rq[:, 0]]
        has = np.all(np.isfinite(sq), axis=1)
        rs = np.round(sq[has]).astype(np.int64)
        out.append((rows_w[has], ref_map[rs[:, 1], rs[:, 0]]))
    if not out:
        return Matches.empty()
    rows = np.concatenate([r for r, _ in out])
    Y = np.concatenate([y for _, y in out])
    ok = np.all(np.isfinite(Y), axis=1)
    idx = sel[rows[ok]]
    return Matches(frame.xyz[idx], Y[ok], frame.conf[idx])


# --------------------------------------------------------------------------- Gauss–Newton step


def _rows(pose_part: np.ndarray, grid_coef: np.ndarray | None, idx: np.ndarray | None) -> "_Rows":
    """Jacobian rows: dense pose columns [R, 6] + grid columns (node idx [R, 8], coef [R, 8, 3])."""
    return _Rows(pose_part, grid_coef, idx)


def frame_scale(frame: FramePoints) -> float:
    """Median camera depth of the frame's points (cutoffs are relative to depth / this)."""
    return float(np.median(frame.xyz[:, 2]))


_REG_CACHE: dict = {}


def _regulariser(res: int, smoothness: float, damping: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """block-diag(0₆, (λ LᵀL + μ I) ⊗ I₃) for a grid of `res`³ nodes, sparse and dense (cached)."""
    key = (res, smoothness, damping)
    if key not in _REG_CACHE:
        from worldstereo.align.deform import ControlGrid

        L = ControlGrid(np.zeros(3), np.ones(3), np.zeros((res, res, res, 3))).smoothness_operator()
        reg = smoothness * (L.T @ L) + damping * sp.identity(res**3)
        reg3 = sp.block_diag([sp.csr_matrix((6, 6)), sp.kron(reg, sp.identity(3))]).tocsr()
        _REG_CACHE[key] = (reg3, reg3.toarray())
    return _REG_CACHE[key]


def _huber(r: np.ndarray, floor: float) -> np.ndarray:
    sigma = max(1.4826 * float(np.median(np.abs(r))), floor) if len(r) else floor
    k = 1.345 * sigma
    a = np.abs(r)
    return np.where(a <= k, 1.0, k / np.maximum(a, 1e-30))


@dataclass
class StepStats:
    cost: float
    n_pairs: int
    median_p2plane: float
    update: float


def gn_step(frame: FramePoints, state: FrameState, model: VoxelModel, matches: Matches, anchor: Matches,
            icp: ICPConfig, deform: DeformConfig, scale: float, cutoff: float,
            anchor_weight: float = 0.0, corr_weight: float | None = None,
            subset_rng: np.random.Generator | None = None) -> StepStats:
    """One Gauss–Newton update of `state` (in place) for fixed nearest neighbours.

    `subset_rng` draws the random subset of point-to-plane pairs (default: seeded by icp.seed and
    the frame index); pass one generator through all iterations so each draws a fresh subset.
    """
    if subset_rng is None:
        subset_rng = np.random.default_rng([icp.seed, frame.index])
    X0 = state.world(frame.xyz)
    ok, nn = _plane_pairs(frame, state, model, X0, icp, cutoff, subset_rng)
    c = X0[ok].mean(axis=0) if ok.any() else X0.mean(axis=0)  # rotation centre of the twist
    n_cols = 6 + (3 * state.grid.n_nodes if state.grid is not None else 0)
    terms: list[_Term] = []
    if ok.sum() >= 10:
        terms.append(_plane_term(frame, state, model, X0, ok, nn, c, icp, scale, n_cols))
    lam_c = icp.corr.weight if corr_weight is None else corr_weight
    for m, lam, robust in ((matches, lam_c, True), (anchor, anchor_weight, False)):
        if len(m) >= 3 and lam > (icp.corr.min_weight if robust else 0.0):
            terms += _point_terms(frame, state, m, lam, robust, c, icp, scale, n_cols)
    if (icp.centre_prior > 0 or icp.rotation_prior > 0) and ok.sum() >= 10:
        # in units of the data's own residual level: clean data (residuals ~0) all but ignore it
        sigma = max(1.4826 * float(np.median(np.abs(terms[0].resid))), 1e-4 * scale)
        terms.append(_prior_term(state, frame.c2w_given, c, icp, scale, sigma))
    if not terms:
        return StepStats(np.nan, 0, np.nan, 0.0)
    delta, cost = _solve(terms, state, icp, deform, scale, n_cols)
    upd = _apply_update(state, delta, c, scale)
    p2p = float(np.median(np.abs(terms[0].resid))) if ok.sum() >= 10 else np.nan
    return StepStats(cost, int(ok.sum()), p2p, float(upd))


@dataclass
class _Rows:
    """Jacobian rows of one term: every row has the 6 twist columns and, with a grid, the 3 columns
    of each of the 8 nodes of the cell holding its point (so rows of one cell share 30 columns)."""

    pose: np.ndarray  # [R, 6]
    grid_coef: np.ndarray | None  # [R, 8, 3]
    idx: np.ndarray | None  # [R, 8] flat node indices


@dataclass
class _Term:
    """Weighted least-squares rows of one energy term: Jacobian J [R, n_cols], residual r [R], weight w [R]."""

    J: _Rows
    resid: np.ndarray
    weight: np.ndarray


def _plane_pairs(frame: FramePoints, state: FrameState, model: VoxelModel, X0: np.ndarray, icp: ICPConfig,
                 cutoff: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(ok [P] bool: points paired with their nearest model point, nn [P] model index): within the
    depth-scaled cutoff, normals agreeing, at most icp.gn_points of them (a random subset).

    Only a random candidate set of 2 × gn_points points is looked up in the KD-tree (bounded by the
    largest cutoff): the nearest-neighbour queries were the largest cost left after the solve."""
    _, _, mn, _ = model.arrays()
    P = len(X0)
    cand = np.sort(rng.choice(P, 2 * icp.gn_points, replace=False)) if P > 2 * icp.gn_points else np.arange(P)
    rel = frame.xyz[cand, 2] / frame_scale(frame)  # cutoffs grow with the point's depth
    d, nn_c = model.tree().query(X0[cand], workers=-1, distance_upper_bound=cutoff * float(rel.max()))
    nn_c = np.minimum(nn_c, len(mn) - 1)  # misses (d = inf) get a valid index; `ok` drops them
    nrm_w = frame.normal[cand] @ state.A[:3, :3].T
    ok_c = (d < cutoff * rel) & (np.sum(nrm_w * mn[nn_c], axis=1) > icp.normal_cos)
    if ok_c.sum() > icp.gn_points:  # a random subset per iteration is enough for the normal equations
        keep = rng.choice(np.nonzero(ok_c)[0], icp.gn_points, replace=False)
        ok_c = np.zeros_like(ok_c)
        ok_c[keep] = True
    ok = np.zeros(P, bool)
    ok[cand] = ok_c
    nn = np.zeros(P, np.int64)
    nn[cand] = nn_c
    return ok, nn


def _plane_term(frame: FramePoints, state: FrameState, model: VoxelModel, X0: np.ndarray, ok: np.ndarray,
                nn: np.ndarray, c: np.ndarray, icp: ICPConfig, scale: float, n_cols: int) -> _Term:
    """Point-to-plane rows n_q·(X − q), Huber × confidence × colour agreement weights (sum 1)."""
    mx, mrgb, mn, _ = model.arrays()
    R_A = state.A[:3, :3]
    n = mn[nn][ok]
    r = np.sum(n * (X0[ok] - mx[nn[ok]]), axis=1)
    a = X0[ok] - c
    w = _huber(r, 1e-4 * scale) * frame.conf[ok]
    if icp.colour_weight > 0:
        cd = np.sum((frame.rgb[ok] - mrgb[nn[ok]]) ** 2, axis=1)
        w *= (1 - icp.colour_weight) + icp.colour_weight * np.exp(-cd / (2 * icp.colour_sigma**2))
    pose = np.concatenate([np.cross(a, n), n], axis=1)
    gc = idx = None
    if state.grid is not None:
        idx, gw = state.grid.weights(frame.xyz)  # cached for the frame's points
        idx, gw = idx[ok], gw[ok]
        gc = gw[:, :, None] * (n @ R_A)[:, None, :]
    return _Term(_rows(pose, gc, idx), r, w / w.sum())


def _point_terms(frame: FramePoints, state: FrameState, m: Matches, lam: float, robust: bool, c: np.ndarray,
                 icp: ICPConfig, scale: float, n_cols: int) -> list[_Term]:
    """Point-to-point rows X_m − Y_m (one term per axis) of dense matches (robust: cutoff and Huber)
    or of the anchor (plain least squares); weights λ · w_m / Σ w_m."""
    Xm = state.world(m.x)
    e = Xm - m.Y
    bearing = robust and icp.corr.residual == "bearing"
    # row directions: the world axes, or two directions across each match's ray (bearing)
    dirs = _across_ray(Xm - state.A[:3, 3], state.A[:3, 0]) if bearing else np.broadcast_to(np.eye(3), (len(e), 3, 3))
    e_dir = np.einsum("mkj,mj->mk", dirs, e)  # [M, 2 or 3]
    dist = np.linalg.norm(e_dir, axis=1)
    keep = dist < (icp.corr.cutoff * scale * m.x[:, 2] / frame_scale(frame) if robust else np.inf)
    if keep.sum() < 3:
        return []
    e_dir, a, x, dirs = e_dir[keep], Xm[keep] - c, m.x[keep], dirs[keep]
    w = lam * m.w[keep] * (_huber(dist[keep], 1e-4 * scale) if robust else 1.0)
    w = w / m.w[keep].sum()
    R_A = state.A[:3, :3]
    gc = idx = None
    if state.grid is not None:
        idx, gw = state.grid.weights(x)
    terms = []
    for j in range(dirs.shape[1]):
        b = dirs[:, j]  # d(b·X)/d(ω, v) = (a × b, b), as for a plane normal
        pose = np.concatenate([np.cross(a, b), b], axis=1)
        if state.grid is not None:
            gc = gw[:, :, None] * (b @ R_A)[:, None, :]
        terms.append(_Term(_rows(pose, gc, idx), e_dir[:, j], w))
    return terms


def _prior_term(state: FrameState, c2w_prior: np.ndarray, c: np.ndarray, icp: ICPConfig, scale: float,
                sigma: float) -> _Term:
    """Pose-only rows pulling the rigid part of A towards c2w_prior (ICPConfig.centre_prior,
    rotation_prior; a part whose κ is 0 adds no rows): rotation rows log(R_A R_priorᵀ) · scale / σ_θ
    (radians), centre rows (t_A − t_prior) / centre_prior_sigma, each with weight κ · (sigma /
    scale)² (sigma: the robust scale of the point-to-plane residuals, scene units), in the twist
    about c of the solve (X' = exp(ω)(X − c) + c + v): d/dω of the rotation rows is I (first order),
    of the centre rows −[t_A − c]×; d/dv of the centre rows is I."""
    rows, resid, weight = [], [], []
    if icp.rotation_prior > 0:
        k_rot = scale / np.radians(icp.rotation_prior_deg)
        rows.append(np.c_[np.eye(3) * k_rot, np.zeros((3, 3))])
        resid.append(Rotation.from_matrix(state.A[:3, :3] @ c2w_prior[:3, :3].T).as_rotvec() * k_rot)
        weight.append(np.full(3, icp.rotation_prior))
    if icp.centre_prior > 0:
        k_c = 1.0 / icp.centre_prior_sigma
        a = state.A[:3, 3] - c
        rows.append(np.c_[-skew(a) * k_c, np.eye(3) * k_c])
        resid.append((state.A[:3, 3] - c2w_prior[:3, 3]) * k_c)
        weight.append(np.full(3, icp.centre_prior))
    w = np.concatenate(weight) * (sigma / scale) ** 2
    return _Term(_Rows(np.concatenate(rows), None, None), np.concatenate(resid), w)


def check_icp_config(icp: ICPConfig) -> None:
    """The camera prior settings, the flow's pyramid level, the bundle adjustment's settings, the
    fused cloud's depth limit and the drift's unit tolerance make sense (InputError naming the flag
    otherwise)."""
    for name in ("centre_prior", "rotation_prior"):
        if getattr(icp, name) < 0:
            raise InputError(None, f"--icp.{name.replace('_', '-')} must be ≥ 0, got {getattr(icp, name)}")
    for name in ("centre_prior_sigma", "rotation_prior_deg"):
        if not getattr(icp, name) > 0:
            raise InputError(None, f"--icp.{name.replace('_', '-')} must be > 0, got {getattr(icp, name)}")
    if icp.corr.flow_finest_scale < 0:
        raise InputError(None, f"--icp.corr.flow-finest-scale must be ≥ 0, got {icp.corr.flow_finest_scale}")
    b = icp.bundle
    for name, ok, need in (("neighbours", b.neighbours >= 1, "≥ 1"), ("points", b.points >= 8, "≥ 8"),
                           ("ransac_px", b.ransac_px > 0, "> 0"), ("min_matches", b.min_matches >= 6, "≥ 6"),
                           ("min_inlier_frac", 0 <= b.min_inlier_frac <= 1, "in [0, 1]"),
                           ("max_angle_deg", b.max_angle_deg > 0, "> 0"), ("depth_sigma", b.depth_sigma > 0, "> 0"),
                           ("iters", b.iters >= 1, "≥ 1"), ("floor_px", b.floor_px > 0, "> 0")):
        if not ok:
            raise InputError(None, f"--icp.bundle.{name.replace('_', '-')} must be {need}, got {getattr(b, name)}")
    if not icp.fuse.max_error >= 0:
        raise InputError(None, f"--icp.fuse.max-error must be ≥ 0, got {icp.fuse.max_error}")
    if not icp.drift.units_tolerance >= 1:
        raise InputError(None, f"--icp.drift.units-tolerance must be ≥ 1, got {icp.drift.units_tolerance}")


def _across_ray(ray: np.ndarray, side: np.ndarray) -> np.ndarray:
    """[M, 2, 3]: two unit directions orthogonal to each ray [M, 3] and to each other (`side`, a
    direction never along a ray in view, e.g. the camera's x axis, fixes the pair)."""
    r = ray / np.linalg.norm(ray, axis=1, keepdims=True)
    b1 = np.cross(r, side)
    b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
    return np.stack([b1, np.cross(r, b1)], axis=1)


def _corr_weight(corr: CorrespondenceConfig, frac: float) -> float:
    """λ_c at a point `frac` (0 → 1) of the cutoff schedule (see CorrespondenceConfig)."""
    if corr.residual == "bearing":
        return corr.bearing_weight * (corr.bearing_weight_final / corr.bearing_weight) ** frac
    return corr.weight * (corr.weight_final / corr.weight) ** frac if corr.weight > 0 else 0.0


def _normal_equations(terms: list[_Term], n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense JᵀWJ [n_cols, n_cols] and JᵀWr [n_cols], accumulated per grid cell: the rows of one cell
    share their 30 columns, so each cell adds one 30 × 30 block (a few BLAS calls per cell instead of
    a sparse matrix product over all rows; measured in BENCHMARKS.md, issue 15)."""
    H = np.zeros((n_cols, n_cols))
    b = np.zeros(n_cols)
    for t in terms:
        J, w, wr = t.J, t.weight, t.weight * t.resid
        if J.grid_coef is None:
            H[:6, :6] += J.pose.T @ (w[:, None] * J.pose)
            b[:6] += J.pose.T @ wr
            continue
        R = len(w)
        vals = np.concatenate([J.pose, J.grid_coef.reshape(R, -1)], axis=1)  # [R, 30]
        cols = np.concatenate([np.broadcast_to(np.arange(6), (R, 6)),
                               (6 + 3 * J.idx[:, :, None] + np.arange(3)).reshape(R, -1)], axis=1)
        b += np.bincount(cols.ravel(), weights=(vals * wr[:, None]).ravel(), minlength=n_cols)
        order = np.argsort(J.idx[:, 0], kind="stable")  # corner 0 names the cell
        cell = J.idx[order, 0]
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        vals, w, cols = vals[order], w[order], cols[order]
        for s0, s1 in zip(starts, np.r_[starts[1:], R]):
            v = vals[s0:s1]
            c = cols[s0]
            H[np.ix_(c, c)] += v.T @ (w[s0:s1, None] * v)
    return H, b


def _solve(terms: list[_Term], state: FrameState, icp: ICPConfig, deform: DeformConfig, scale: float,
           n_cols: int) -> tuple[np.ndarray, float]:
    """Damped, regularised normal equations (JᵀWJ + D + R) Δ = −(JᵀWr + R g) → (Δ [n_cols], cost)."""
    H, b = _normal_equations(terms, n_cols)
    r = np.concatenate([t.resid for t in terms])
    w = np.concatenate([t.weight for t in terms])
    H[np.arange(3), np.arange(3)] += icp.pose_damping * scale**2
    H[np.arange(3, 6), np.arange(3, 6)] += icp.pose_damping
    if state.grid is not None:
        reg3, reg3_dense = _regulariser(state.grid.resolution, deform.smoothness, deform.damping)
        H += reg3_dense
        g = state.grid.values if state.rest is None or not deform.damp_to_scale else state.grid.values - state.rest
        b = b + reg3 @ np.concatenate([np.zeros(6), g.reshape(-1)])
    try:  # symmetric positive definite once damped: Cholesky, half the work of LU
        delta = cho_solve(cho_factor(H), -b)
    except np.linalg.LinAlgError:
        delta = np.linalg.solve(H, -b)
    return delta, float(np.sum(w * r**2))



def _apply_update(state: FrameState, delta: np.ndarray, c: np.ndarray, scale: float) -> float:
    """X' = exp(ω)(X − c) + c + v, g += Δg (in place); returns the largest update (rad or scale fraction)."""
    Rinc = Rotation.from_rotvec(delta[:3]).as_matrix()
    M = np.eye(4)
    M[:3, :3] = Rinc
    M[:3, 3] = c + delta[3:6] - Rinc @ c
    state.A = M @ state.A
    upd = max(np.abs(delta[:3]).max(), np.abs(delta[3:6]).max() / scale)
    if state.grid is not None:
        state.grid.values += delta[6:].reshape(state.grid.values.shape)
        upd = max(upd, np.abs(delta[6:]).max() / scale)
    return upd


def plane_distances(X: np.ndarray, model: VoxelModel, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Per point: (distance to its nearest model point, |point-to-plane| to it), both inf where
    there is none within cutoff. One KD-tree query for every figure below."""
    mx, _, mn, _ = model.arrays()
    d, nn = model.tree().query(X, workers=-1, distance_upper_bound=cutoff)
    r = np.full(len(X), np.inf)
    ok = np.isfinite(d)
    r[ok] = np.abs(np.sum(mn[nn[ok]] * (X[ok] - mx[nn[ok]]), axis=1))
    return d, r


def _median_within(r: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(r)
    return (float(np.median(r[ok])), float(ok.mean())) if ok.any() else (float("nan"), 0.0)


def truncated_score(r: np.ndarray, cutoff: float) -> float:
    """Median over all points of min(|point-to-plane|, cutoff) (r from `plane_distances`), a point
    with no model point within the cutoff counting as the cutoff: one score for a placement,
    whatever its inlier count."""
    return float(np.median(np.minimum(r, cutoff))) if len(r) else float("nan")


def p2plane_residual(X: np.ndarray, model: VoxelModel, cutoff: float) -> tuple[float, float]:
    """(median |point-to-plane| over pairs within cutoff, fraction of points within cutoff)."""
    return _median_within(plane_distances(X, model, cutoff)[1])


# --------------------------------------------------------------------------- per-frame alignment


def init_from_matches(frame: FramePoints, state: FrameState, matches: Matches, scale: float) -> float:
    """Robust Sim(3) from matches: rotation/translation into A, scale as a linear grid field.

    Returns the fraction of matches within 10 % of their depth of that Sim(3) (NaN with < 30
    matches): a frame of random depth has almost none (≤ 0.07 measured), good ones ≥ 0.7."""
    if len(matches) < 30:
        return float("nan")
    fit = robust_umeyama(matches.x, matches.Y, iters=64, seed=0)
    T = fit.transform
    agree = float(np.mean(np.linalg.norm(T.apply(matches.x) - matches.Y, axis=1) < 0.1 * T.s * matches.x[:, 2]))
    if fit.inliers.sum() < 20 or not (0.5 < T.s < 2.0):
        return agree
    A = np.eye(4)
    A[:3, :3] = T.R
    A[:3, 3] = T.t
    state.A = A
    if state.grid is not None:
        nodes = state.grid.node_positions()
        state.grid.values = ((T.s - 1.0) * nodes).reshape(state.grid.values.shape)
        state.rest = state.grid.values.copy()  # a depth scale error is no reason to move the camera
    else:  # rigid only: keep the scale out, move the centroid instead
        cx = matches.x[fit.inliers].mean(0)
        state.A[:3, 3] += (T.s - 1.0) * T.R @ cx
    return agree


@dataclass
class IterationStats:
    """How `align_frame` ended: Gauss–Newton iterations run, point-to-plane pairs of the last one."""

    iters: int
    pairs: int


def align_frame(frame: FramePoints, state: FrameState, model: VoxelModel, matches: Matches, icp: ICPConfig,
                deform: DeformConfig, scale: float, anchor: Matches | None = None,
                anchor_weight: float = 0.0, pass_index: int = 0) -> IterationStats:
    """Iterate `gn_step` with a shrinking cutoff until the update is below tol (then fit the hash
    field when deform.kind is hashgrid).

    The random pair subsets come from a generator seeded by (icp.seed, frame index, pass_index):
    the same run gives the same result in every process; each pass (global-opt sweep) differs.
    """
    anchor = anchor or Matches.empty()
    subset_rng = np.random.default_rng([icp.seed, frame.index, pass_index])
    half = max(icp.max_iters // 2, 1)
    it, st = 0, None
    for it in range(icp.max_iters):
        frac = min(it / half, 1.0)
        cutoff = scale * icp.max_dist_init * (icp.max_dist_final / icp.max_dist_init) ** frac
        lam_c = _corr_weight(icp.corr, frac)
        st = gn_step(frame, state, model, matches, anchor, icp, deform, scale, cutoff, anchor_weight, lam_c,
                     subset_rng)
        if it + 1 >= icp.min_iters and frac >= 1.0 and st.update < icp.tol:
            break
    out = IterationStats(it + 1, st.n_pairs if st else 0)
    if deform.kind == "hashgrid":
        fit_hash_field(frame, state, model, matches, icp, deform, scale)
    return out


def fit_hash_field(frame: FramePoints, state: FrameState, model: VoxelModel, matches: Matches,
                   icp: ICPConfig, deform: DeformConfig, scale: float) -> None:
    """Adam on a hash grid + MLP displacement added to the grid (pose and grid fixed).

    Losses: Huber point-to-plane, correspondences, colour (model colour interpolated at X from its
    4 nearest voxels, inverse-distance weights), curvature (second finite differences).
    """
    from worldstereo.align.hashgrid import HashDeformField

    lo, hi = (state.grid.lo, state.grid.hi) if state.grid is not None else (frame.xyz.min(0), frame.xyz.max(0))
    hc = deform.hash
    field_ = HashDeformField(lo, hi, hc.levels, hc.features, hc.log2_table, hc.base_res, hc.max_res, hc.mlp_hidden,
                             seed=frame.index)
    field_.scale.fill_(scale)
    opt = torch.optim.Adam([p for p in field_.parameters() if p.requires_grad], lr=hc.lr)
    mx, mrgb, mn, _ = model.arrays()
    R = torch.as_tensor(state.A[:3, :3], dtype=torch.float64)
    t = torch.as_tensor(state.A[:3, 3], dtype=torch.float64)
    x = torch.as_tensor(frame.xyz.copy())  # frame.xyz is read-only (cached grid weights depend on it)
    gdisp = torch.as_tensor(state.grid.displace(frame.xyz) if state.grid is not None else np.zeros_like(frame.xyz))
    xm = torch.as_tensor(matches.x)
    gm = torch.as_tensor(state.grid.displace(matches.x) if state.grid is not None and len(matches) else np.zeros_like(matches.x))
    Ym = torch.as_tensor(matches.Y)
    rgb = torch.as_tensor(frame.rgb)
    cutoff = icp.max_dist_final * scale
    gen = torch.Generator().manual_seed(0)
    for step in range(hc.iters):
        if step % 20 == 0:  # re-associate
            with torch.no_grad():
                X = ((x + gdisp + field_(x)) @ R.T + t).numpy()
            d, nn = model.tree().query(X, k=4, workers=-1)
            ok = torch.as_tensor(d[:, 0] < cutoff)
            q = torch.as_tensor(mx[nn[:, 0]])
            nq = torch.as_tensor(mn[nn[:, 0]])
            q4 = torch.as_tensor(mx[nn])
            c4 = torch.as_tensor(mrgb[nn])
        X = (x + gdisp + field_(x)) @ R.T + t
        r = torch.sum(nq * (X - q), dim=1)[ok]
        loss = torch.nn.functional.huber_loss(r / scale, torch.zeros_like(r), delta=icp.max_dist_final / 4)
        if icp.colour_weight > 0:
            iw = 1.0 / (torch.sum((X[:, None] - q4) ** 2, dim=-1) + (0.5 * icp.voxel * scale) ** 2)
            col = torch.sum(iw[..., None] * c4, 1) / iw.sum(1, keepdim=True)
            loss = loss + icp.colour_weight * 1e-3 * torch.mean(torch.sum((col - rgb) ** 2, 1)[ok])
        if len(matches):
            Xm = (xm + gm + field_(xm)) @ R.T + t
            loss = loss + icp.corr.weight * torch.mean(torch.sum((Xm - Ym) ** 2, 1)) / scale**2
        e = torch.nn.functional.normalize(torch.randn(len(x), 3, generator=gen, dtype=x.dtype), dim=1)
        h = 0.05 * scale
        curv = field_(x + h * e) + field_(x - h * e) - 2 * field_(x)
        loss = loss + hc.smoothness * torch.mean(torch.sum(curv**2, 1)) / h**2
        opt.zero_grad()
        loss.backward()
        opt.step()
    field_.eval()
    for p in field_.parameters():
        p.requires_grad_(False)
    state.hash_field = field_


def bearing_polish(frame: FramePoints, state: FrameState, model: VoxelModel, matches: Matches, icp: ICPConfig,
                   deform: DeformConfig, scale: float) -> FrameState:
    """The guarded bearing step (corr.residual = guarded): `corr.polish_iters` more iterations of a
    copy of the frame's point-residual solution with the bearing residual at the final cutoff, kept
    only when its median point-to-plane residual to the model stays within `polish_max_ratio` × that
    of the point solution (+ `polish_slack` × scale). Flow that is right holds the frame's slide
    along the surfaces and the surfaces stay put; flow that is partly wrong (large motion) drags the
    frame off the surfaces, which the residual shows (BENCHMARKS.md, issue 15)."""
    cut = icp.max_dist_final * scale
    p_point = p2plane_residual(state.world(frame.xyz), model, cut)[0]
    trial = state.copy()
    n = icp.corr.polish_iters
    icp_b = replace(icp, corr=replace(icp.corr, residual="bearing"), max_iters=n, min_iters=n,
                    max_dist_init=icp.max_dist_final)
    pose_and_grid = replace(deform, kind="grid") if deform.kind == "hashgrid" else deform  # hash field kept
    align_frame(frame, trial, model, matches, icp_b, pose_and_grid, scale, pass_index=1)
    p_bearing = p2plane_residual(trial.world(frame.xyz), model, cut)[0]
    ok = p_bearing <= icp.corr.polish_max_ratio * p_point + icp.corr.polish_slack * scale
    return trial if ok else state


# --------------------------------------------------------------------------- the sequential loop


@dataclass
class FrameMetrics:
    """One frame of the sequential pass (align/metrics.json "per_frame"). Residuals are medians of
    |point-to-plane| to the model of the earlier frames (scene units), before (given pose) and after
    alignment; inlier_frac = fraction of the frame's points within the initial cutoff after,
    inlier_frac_final = within the final cutoff (the rejection test); rejected = not merged."""

    frame: int  # original results.npz index
    p2plane_before: float
    p2plane_after: float
    inlier_frac: float
    matches: int  # dense 2D correspondences used
    seconds: float
    iters: int
    pairs: int  # point-to-plane pairs of the last iteration
    inlier_frac_final: float = float("nan")
    match_agree: float = float("nan")  # matches within 10 % of depth of their Sim(3) (init_from_matches)
    rejected: bool = False
    reject_reason: str = ""  # which test failed: inliers, matches or worse (`rejection_reason`)
    truncated_before: float = float("nan")  # `truncated_score` at the given pose (scene units) …
    truncated_after: float = float("nan")  # … and aligned: "worse" when after > before
    retried_without_matches: bool = False  # the alignment ended worse than the given pose, and a
    # second one on geometry alone (from the same start, no matches) was better and kept


@dataclass
class AlignResult:
    """States of all aligned frames (same order as `frames`), the merged model and statistics of
    frames[1:] (frames[0] is the gauge)."""

    states: list[FrameState]
    model: VoxelModel
    contributions: list[Contribution]
    per_frame: list[FrameMetrics] = field(default_factory=list)
    seconds: float = 0.0
    rejected: list[int] = field(default_factory=list)  # positions in `frames` of failed alignments

    def accepted(self) -> list[int]:
        """Positions in `frames` of the frames merged into the model."""
        bad = set(self.rejected)
        return [k for k in range(len(self.states)) if k not in bad]


def merge_frame(model: VoxelModel, frame: FramePoints, state: FrameState) -> Contribution:
    X = state.world(frame.xyz)
    c = model.contribution(X, frame.rgb, frame.normal @ state.A[:3, :3].T, frame.conf)
    model.add(c, frame.index)
    return c


def gather_matches(frame: FramePoints, refs: list[tuple[FramePoints, np.ndarray]], icp: ICPConfig,
                   rng: np.random.Generator, c2w_pred: np.ndarray | None = None) -> Matches:
    if icp.corr.method == "none":
        return Matches.empty()
    return Matches.cat([frame_matches(frame, ref, pm, icp, rng, c2w_pred) for ref, pm in refs])


def rejection_reason(icp: ICPConfig, inlier_frac_final: float, match_agree: float, truncated_before: float,
                     truncated_after: float, scale: float) -> str:
    """Why a frame's alignment failed ("" when it did not): too few points on the model at the final
    cutoff, matches that do not agree with one Sim(3), or an alignment that ended farther from the
    model (`truncated_score`) than its given pose (NaN figures never fail a test)."""
    if inlier_frac_final < icp.reject_inlier_frac:
        return "inliers"
    if match_agree < icp.reject_match_frac:
        return "matches"
    if icp.reject_worse and truncated_after > truncated_before + icp.worse_margin * scale:
        return "worse"
    return ""


def match_references(frames: list[FramePoints], accepted: list[int], i: int, corr: CorrespondenceConfig,
                     scale: float) -> list[int]:
    """Positions of the accepted frames (ascending) that frame i is matched against (corr.refs)."""
    if corr.frames <= 0 or corr.method == "none":
        return []
    if corr.refs == "recent":
        return accepted[-corr.frames:]
    recent_first = accepted[::-1]  # ties go to the more recent frame
    return sorted(sorted(recent_first, key=lambda j: view_distance(frames[i].c2w_given, frames[j].c2w_given, scale))
                  [:corr.frames])


def sequential_align(frames: list[FramePoints], icp: ICPConfig, deform: DeformConfig, scale: float,
                     max_jump: float = 0.05, on_frame: Callable[[int, FrameMetrics], None] | None = None,
                     progress: Callable | None = None) -> AlignResult:
    """Align frames[1:] one by one to the model grown from the frames before; frames[0] is the gauge."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(icp.seed)
    model = VoxelModel(icp.voxel * scale)
    states = [FrameState(frames[0].c2w_given.copy(), None)]
    contribs = [merge_frame(model, frames[0], states[0])]
    accepted = [0]
    maps: dict[int, np.ndarray] = {}  # point maps of recent references (accepted states never change)

    def ref_pointmap(j: int) -> np.ndarray:
        if j not in maps:
            if len(maps) >= 8:
                maps.pop(next(iter(maps)))
            maps[j] = world_pointmap(frames[j], states[j], max_jump)
        return maps[j]

    cut = icp.max_dist_init * scale
    per_frame: list[FrameMetrics] = []
    rejected: list[int] = []
    last = 0  # the last accepted frame: the drift is carried from it
    order = range(1, len(frames))
    for i in (progress(order, total=len(frames) - 1) if progress else order):
        t1 = time.perf_counter()
        f = frames[i]
        st = new_state(f, deform)
        st.A = (states[last].A @ np.linalg.inv(frames[last].c2w_given)) @ f.c2w_given  # carry the drift
        _, r_given = plane_distances(f.xyz @ f.c2w_given[:3, :3].T + f.c2w_given[:3, 3], model, cut)
        before, score_given = _median_within(r_given)[0], truncated_score(r_given, cut)
        refs = [(frames[j], ref_pointmap(j)) for j in match_references(frames, accepted, i, icp.corr, scale)]
        A_carried = st.A.copy()
        matches = gather_matches(f, refs, icp, rng, A_carried)
        agree = init_from_matches(f, st, matches, scale) if icp.init_from_matches else float("nan")
        stats = align_frame(f, st, model, matches, icp, deform, scale)
        if icp.corr.residual == "guarded" and len(matches):
            st = bearing_polish(f, st, model, matches, icp, deform, scale)
        d_aligned, r_aligned = plane_distances(st.world(f.xyz), model, cut)
        score_aligned = truncated_score(r_aligned, cut)
        retried = False
        if icp.reject_worse and len(matches) and score_aligned > score_given + icp.worse_margin * scale:
            # worse than where it started: the matches are the suspects, so align on geometry alone
            alt = new_state(f, deform)
            alt.A = A_carried
            alt_stats = align_frame(f, alt, model, Matches.empty(), icp, deform, scale)
            d_alt, r_alt = plane_distances(alt.world(f.xyz), model, cut)
            score_alt = truncated_score(r_alt, cut)
            if score_alt < score_aligned:
                st, stats, d_aligned, r_aligned, score_aligned, retried = alt, alt_stats, d_alt, r_alt, score_alt, True
        after, inl = _median_within(r_aligned)
        inl_final = float(np.mean(d_aligned <= icp.max_dist_final * scale))  # the final cutoff < cut
        states.append(st)
        reason = rejection_reason(icp, inl_final, agree, score_given, score_aligned, scale)
        if reason:
            rejected.append(i)
            contribs.append(Contribution(np.zeros(0, np.int64), np.zeros((0, 10))))
        else:
            contribs.append(merge_frame(model, f, st))
            accepted.append(i)
            last = i
        rec = FrameMetrics(f.index, before, after, inl, len(matches), time.perf_counter() - t1, stats.iters,
                           stats.pairs, inl_final, agree, i in rejected, reason, score_given, score_aligned, retried)
        per_frame.append(rec)
        if on_frame:
            on_frame(i, rec)
    return AlignResult(states, model, contribs, per_frame, time.perf_counter() - t0, rejected)
