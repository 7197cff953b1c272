"""Drift correction of the refined cameras, with the given cameras as absolute priors.

Frames are aligned one after another, each to the model of the frames before it, so the refined
cameras carry a slowly growing error (a drift) that no single frame can see. The given cameras
(the path the video model was asked to follow) have an error of their own, but it does not
accumulate. Per accepted frame k (frame 0 is the gauge and stays put) the difference

    e_k = log(R_given R_refinedᵀ)            (a world rotation vector; the centres likewise:
                                               (c_given − c_refined) / scene scale)

is modelled as a local level model (a random walk seen through white noise):

    d_k = d_{k−1} + w_k,   w_k ~ N(0, s_k I),   s_k = q · (frames since the last accepted one) [+ J]
    e_k = d_k + n_k,       n_k ~ N(0, r I),     d_0 = 0

d is the drift of the refined cameras, n the given cameras' own error. r and q are found by
maximum likelihood (Kalman filter, on a log grid spanning 6e-5 to 2 × the residuals' mean square
for r and 0 to 100 × r for q); a jump J (a change-point, for a frame aligned across a gap of
rejected frames; diffuse: a variance of `jump_scale` × that mean square) is added greedily where
it raises the likelihood by more than the BIC cost of its D parameters (on top of the diffuse
prior's own Occam factor: conservative). The drift is the RTS smoother's mean, and each refined
camera is moved by it (the frame's points stay where the alignment put them unless
`move_placements`). When the residuals are white, q comes out ~0 and d ≈ 0: no correction. A
constant offset between the given and the refined cameras is treated as a drift growing from
frame 0 (d_0 = 0 is exact).

The assumption: the given cameras' errors do not drift themselves. If a video model bends the
whole path one way, that bend looks like a drift of ours and the correction would follow it
(`--icp.drift.no-enabled` turns it off).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class DriftConfig:
    """Drift correction of the refined cameras (--icp.drift.*, align/drift.py)."""

    enabled: bool = True
    """Correct the refined cameras' drift towards the given cameras."""
    move_placements: bool = False
    """Move each frame's placement (and so canonical.ply) with its corrected camera. Off by default:
    on the harder benchmark it raised F on the drifting case (+0.014) and cost 0.11 where frames
    after a gap were fitted to the surfaces with a wrong pose (BENCHMARKS.md, issue 15)."""
    min_frames: int = 10
    """Fewest accepted frames (besides frame 0) to fit the model; with fewer it is skipped (two
    variances from a handful of residuals are a guess: on a 7-frame run that had not drifted the
    correction cost 0.5° of RotErr Σ)."""
    jumps: bool = True
    """Allow a free jump after a gap of rejected frames where the likelihood asks for one."""
    jump_scale: float = 100.0
    """Variance of a jump, in units of the residuals' mean square (large: a diffuse jump)."""
    units_tolerance: float = 1.5
    """When the refined path is larger or smaller than the given one by more than this factor, the
    given cameras are taken to be in other units than the depth (metrics.json drift.given_scale)
    and their centres are rescaled about frame 0's before the drift is fitted (`given_units_scale`)."""


@dataclass
class LevelFit:
    """Maximum-likelihood local level model of one residual sequence (rotations or centres)."""

    sigma_given: float  # √r: the given cameras' error per axis (radians, or fraction of scene scale)
    sigma_step: float  # √q: the drift's growth per frame per axis (same units)
    jumps: list[int] = field(default_factory=list)  # positions (in the fitted sequence) of free jumps
    loglik: float = 0.0
    jump_var: float = 0.0  # variance of each jump (same units squared)


@dataclass
class DriftStats:
    """What the correction did (align/metrics.json "drift")."""

    applied: bool
    reason: str = ""  # why it was skipped
    rot_sigma_given_deg: float = float("nan")  # fitted given-camera rotation error per axis
    rot_step_deg: float = float("nan")  # fitted drift growth per frame per axis
    trans_sigma_given: float = float("nan")  # fractions of the scene scale
    trans_step: float = float("nan")
    rot_jumps: list[int] = field(default_factory=list)  # original frame indices where a jump was fitted
    trans_jumps: list[int] = field(default_factory=list)
    max_rot_correction_deg: float = 0.0
    max_trans_correction: float = 0.0  # fraction of the scene scale
    given_scale: float = 1.0  # depth units per unit of the given cameras (`given_units_scale`)


def level_smoother(E: np.ndarray, steps: np.ndarray, r: float) -> tuple[np.ndarray, float]:
    """Kalman filter + RTS smoother of the local level model: E [n, D] residuals, steps [n] the
    variance added before each (d_0 = 0 is exact), r the noise variance (shared by the D axes).
    Returns (smoothed drift [n, D], log-likelihood of E)."""
    n = len(E)
    m_pred, P_pred = np.zeros_like(E), np.zeros(n)
    m_filt, P_filt = np.zeros_like(E), np.zeros(n)
    m, P, ll = np.zeros(E.shape[1]), 0.0, 0.0
    for k in range(n):
        P_pred[k], m_pred[k] = P + steps[k], m
        S = P_pred[k] + r
        v = E[k] - m
        ll -= 0.5 * (E.shape[1] * (_LOG_2PI + np.log(S)) + v @ v / S)
        gain = P_pred[k] / S
        m, P = m + gain * v, (1.0 - gain) * P_pred[k]
        m_filt[k], P_filt[k] = m, P
    out = m_filt.copy()
    for k in range(n - 2, -1, -1):
        G = P_filt[k] / P_pred[k + 1] if P_pred[k + 1] > 0 else 0.0
        out[k] = m_filt[k] + G * (out[k + 1] - m_pred[k + 1])
    return out, float(ll)


def level_smoother_dense(E: np.ndarray, steps: np.ndarray, r: float) -> tuple[np.ndarray, float]:
    """The same as `level_smoother` by the joint Gaussian (slow reference, the test oracle):
    Cov(d) = cumulative sums of steps, d̂ = C (C + r I)⁻¹ E."""
    n = len(E)
    cum = np.cumsum(steps)
    C = cum[np.minimum.outer(np.arange(n), np.arange(n))]
    Sigma = C + r * np.eye(n)
    sol = np.linalg.solve(Sigma, E)
    _, logdet = np.linalg.slogdet(Sigma)
    ll = -0.5 * (E.shape[1] * (n * _LOG_2PI + logdet) + float(np.sum(E * sol)))
    return C @ sol, float(ll)


def _steps(gaps: np.ndarray, q: float, jumps: list[int], jump_var: float) -> np.ndarray:
    s = q * (gaps + 1.0)
    s[list(jumps)] += jump_var
    return s


def level_loglik(E: np.ndarray, steps: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Log-likelihood of E [n, D] under many local level models at once: steps [G, n], r [G]
    (the filter pass of `level_smoother`, vectorised over the G models)."""
    G, D = len(r), E.shape[1]
    m, P, ll = np.zeros((G, D)), np.zeros(G), np.zeros(G)
    for k in range(len(E)):
        P = P + steps[:, k]
        S = P + r
        v = E[k][None] - m
        ll -= 0.5 * (D * (_LOG_2PI + np.log(S)) + np.einsum("gd,gd->g", v, v) / S)
        gain = P / S
        m, P = m + gain[:, None] * v, (1.0 - gain) * P
    return ll


def fit_level(E: np.ndarray, gaps: np.ndarray, allow_jumps: bool = True, jump_scale: float = 100.0) -> LevelFit:
    """Maximum-likelihood r, q (on a log grid around the residuals' mean square; q = 0 included) and
    greedy jumps at positions with gaps > 0: each round scores every candidate with r, q held, adds
    the best one and fits r, q again, while the gain beats the BIC cost of its D parameters."""
    n, D = E.shape
    r0 = max(float(np.mean(E**2)), 1e-16)
    r_grid = r0 * 2.0 ** np.arange(-14.0, 1.01, 0.25)
    q_ratio = np.concatenate([[0.0], 10.0 ** np.arange(-4.0, 2.01, 0.25)])
    rr, aa = (g.ravel() for g in np.meshgrid(r_grid, q_ratio, indexing="ij"))
    jump_var = jump_scale * r0

    def best(jumps: list[int]) -> LevelFit:
        steps = (rr * aa)[:, None] * (gaps + 1.0)[None]
        steps[:, list(jumps)] += jump_var
        ll = level_loglik(E, steps, rr)
        g = int(np.argmax(ll))
        return LevelFit(float(np.sqrt(rr[g])), float(np.sqrt(rr[g] * aa[g])), list(jumps), float(ll[g]), jump_var)

    fit = best([])
    candidates = [k for k in range(n) if gaps[k] > 0] if allow_jumps else []
    penalty = 0.5 * D * np.log(max(n * D, 2))
    while candidates:
        r, q = fit.sigma_given**2, fit.sigma_step**2
        trial = np.stack([_steps(gaps, q, sorted(fit.jumps + [k]), jump_var) for k in candidates])
        ll = level_loglik(E, trial, np.full(len(candidates), r))  # one model per candidate, r and q held
        top = best(sorted(fit.jumps + [candidates[int(np.argmax(ll))]]))
        if top.loglik - fit.loglik <= penalty:
            break
        fit = top
        candidates = [k for k in candidates if k not in fit.jumps]
    return fit


def smooth_drift(E: np.ndarray, gaps: np.ndarray, fit: LevelFit) -> np.ndarray:
    """The drift [n, D] under a fitted model."""
    return level_smoother(E, _steps(gaps, fit.sigma_step**2, fit.jumps, fit.jump_var), fit.sigma_given**2)[0]


def given_units_scale(c2w_given: np.ndarray, c2w_refined: np.ndarray, acc: list[int], scale: float,
                      tolerance: float, min_path: float = 0.1) -> float:
    """s with refined centres ≈ c_0 + s (given centres − c_0), c_0 frame 0's centre (least squares
    over the frames `acc`): the depth's units per unit of the given cameras. A video's depth (a
    relative depth model scaled to a guessed median) need not share the cameras' units; such a factor
    is not a drift, and the refined cameras must stay in the canonical cloud's (the depth's) units.
    1 when s is within [1/tolerance, tolerance] (DriftConfig.units_tolerance): a path-scale drift
    of our own looks the same and is the drift model's to judge, and the estimate is biased towards
    0 by the given centres' own noise (errors in the regressor: 0.69–0.84 on the harder benchmark's
    sweeps, whose units agree). 1 also when the path is too short to tell (RMS displacement of the
    refined centres, in the depth's units like `scale`, < min_path × scale)."""
    c0 = c2w_given[0, :3, 3]
    dg = c2w_given[acc, :3, 3] - c0
    dr = c2w_refined[acc, :3, 3] - c0
    gg = float(np.sum(dg * dg))
    if not acc or gg == 0.0 or float(np.sum(dr * dr)) < len(acc) * (min_path * scale) ** 2:
        return 1.0
    s = float(np.sum(dg * dr)) / gg
    return s if s > 0 and abs(np.log(s)) > np.log(tolerance) else 1.0


def correct_drift(c2w_given: np.ndarray, c2w_refined: np.ndarray, accepted: list[int], scale: float,
                  cfg: DriftConfig, frame_index: list[int] | None = None) -> tuple[np.ndarray, DriftStats]:
    """Corrected cameras [N, 4, 4] (frame 0 and frames not in `accepted` unchanged) and what was
    done. `accepted` are positions > 0 in order; `frame_index` names them in the stats."""
    out = c2w_refined.copy()
    acc = [k for k in accepted if k > 0]
    if not cfg.enabled:
        return out, DriftStats(False, "disabled")
    if len(acc) < max(cfg.min_frames, 1):
        return out, DriftStats(False, f"{len(acc)} accepted frames (< {cfg.min_frames})")
    gaps = np.array([k - p - 1 for p, k in zip([0] + acc[:-1], acc)], float)
    e_rot = np.array([Rotation.from_matrix(c2w_given[k, :3, :3] @ c2w_refined[k, :3, :3].T).as_rotvec() for k in acc])
    s_given = given_units_scale(c2w_given, c2w_refined, acc, scale, cfg.units_tolerance)
    c0 = c2w_given[0, :3, 3]
    e_t = np.array([(c0 + s_given * (c2w_given[k, :3, 3] - c0) - c2w_refined[k, :3, 3]) / scale for k in acc])
    fit_r = fit_level(e_rot, gaps, cfg.jumps, cfg.jump_scale)
    fit_t = fit_level(e_t, gaps, cfg.jumps, cfg.jump_scale)
    d_rot = smooth_drift(e_rot, gaps, fit_r)
    d_t = smooth_drift(e_t, gaps, fit_t)
    for j, k in enumerate(acc):
        out[k, :3, :3] = Rotation.from_rotvec(d_rot[j]).as_matrix() @ c2w_refined[k, :3, :3]
        out[k, :3, 3] = c2w_refined[k, :3, 3] + d_t[j] * scale
    names = frame_index if frame_index is not None else list(range(len(c2w_given)))
    return out, DriftStats(
        True, "", float(np.degrees(fit_r.sigma_given)), float(np.degrees(fit_r.sigma_step)),
        float(fit_t.sigma_given), float(fit_t.sigma_step),
        [int(names[acc[j]]) for j in fit_r.jumps], [int(names[acc[j]]) for j in fit_t.jumps],
        float(np.degrees(np.linalg.norm(d_rot, axis=1).max())), float(np.linalg.norm(d_t, axis=1).max()),
        s_given)


def world_correction(c2w_before: np.ndarray, c2w_after: np.ndarray) -> np.ndarray:
    """The rigid world transform G [4, 4] with G · c2w_before = c2w_after (moves a frame's placement
    with its camera)."""
    return c2w_after @ np.linalg.inv(c2w_before)
