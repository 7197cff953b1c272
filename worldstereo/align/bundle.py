"""Bundle adjustment of the refined cameras on the pixels' bearings across frames (depth a weak prior).

Every depth error of a generated frame moves a point along its pixel's ray, so what two frames agree
on exactly is where each pixel looks, not how far. camera_refine.py fits each frame's camera to its own
aligned points, which keep whatever the alignment left of the depth errors (a slide along a wall, a
warp traded for a turn). Here the cameras of all accepted frames are solved together on dense matches
between neighbouring frames:

    E = Σ_m w_m ρ(‖π(K_t, w2c_t · (c_h + R_h b_m / ρ_m)) − q_m‖ / σ)  reprojection, pixels
      + ½ Σ_m ((log ρ_m − log ρ⁰_m) / σ_d)²                           inverse depth near the aligned one
      + ½ Σ_k ‖c_k − c_k^given‖² / σ_c²                               centre prior (the ICP's σ_c)

A match m is a pixel of a host frame h (bearing b_m = K_h⁻¹ [u, v, 1]) found at q_m in a target frame
t (DIS flow with its forward–backward check, then the pair's essential-matrix RANSAC, as COLMAP
verifies two-view geometry, and an angle test against the aligned cameras); w_m is the host pixel's
confidence relative to the highest of all frames; ρ_m is its inverse depth along the host's ray, started
from the aligned point's. The first accepted frame is the gauge; the depth prior sets the scale and holds points the
bearings leave free. Levenberg–Marquardt on the cameras with every ρ_m eliminated (Schur complement:
its block is a scalar, so the reduced system is 6 × 6 per camera); Huber weights at the MAD scale of
the pixel residuals, Tukey's biweight for the second half of the iterations (as bearing_pnp).
`bundle_adjust_reference` minimises the same energy without the robust weights through scipy's
least_squares: the tests' oracle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from worldstereo.align.matching import dis_flows, flow_matches, view_distance
from worldstereo.align.preprocess import FramePoints


@dataclass
class BundleConfig:
    """Bundle adjustment of the refined cameras (--icp.bundle.*)."""

    enabled: bool = True
    """Run it (the drift correction follows). Off: each camera is its own reprojection fit."""
    neighbours: int = 3
    """Each accepted frame is matched against this many other accepted frames, the nearest by the
    given cameras (centre distance / scene scale + angle between the optical axes)."""
    points: int = 1500
    """Pixels per frame and neighbour (a fixed random subset of the frame's valid pixels)."""
    ransac_px: float = 1.0
    """Essential-matrix RANSAC threshold of a pair's matches (pixels): matches beyond are dropped."""
    min_matches: int = 50
    """A pair with fewer verified matches than this is left out."""
    min_inlier_frac: float = 0.5
    """…and so is a pair whose verified share of its flow matches is below this (the flow failed)."""
    max_angle_deg: float = 3.0
    """A match whose pixel is farther than this angle from where the aligned cameras and depth put it
    is dropped before the solve: RANSAC keeps any set that one geometry explains, also a wrong one
    (a pair whose flow failed on repeated texture), and a wrong pair that alone links a group of
    frames would turn the whole group."""
    depth_sigma: float = 0.1
    """σ_d of the log inverse-depth prior: how far (relative) a point's depth may leave the aligned one."""
    iters: int = 15
    """Levenberg–Marquardt iterations (Huber for the first half, Tukey after)."""
    floor_px: float = 0.25
    """Lowest robust scale σ of the pixel residuals (exact matches would give σ → 0)."""


@dataclass
class BundleMatches:
    """Verified matches between accepted frames (positions in the frame list): host pixel → target pixel."""

    host: np.ndarray  # [M] int
    target: np.ndarray  # [M] int
    pix: np.ndarray  # [M, 2] host pixel (u, v)
    obs: np.ndarray  # [M, 2] target pixel (u, v), float
    inv_depth: np.ndarray  # [M] start inverse depth along the host's ray (z-depth in its camera)
    pairs: int  # pairs kept
    pairs_dropped: int  # pairs left out (too few or too few verified matches)
    weight: np.ndarray | None = None  # [M] the host pixel's confidence / the highest of all (None: all 1)


@dataclass
class BundleStats:
    """What the bundle adjustment did (metrics.json "bundle"); pixel figures are medians over matches."""

    applied: bool
    why_not: str
    pairs: int = 0
    pairs_dropped: int = 0
    matches: int = 0
    reproj_px_before: float = float("nan")
    reproj_px_after: float = float("nan")
    iters: int = 0  # accepted Levenberg–Marquardt steps
    seconds: float = 0.0
    path_scale: float = 1.0  # the factor that gave the adjusted path the fitted path's size (`keep_path_size`)
    unlinked: list[int] = field(default_factory=list)  # accepted frames no kept pair links to frame 0: not adjusted


def neighbours(c2w_given: np.ndarray, accepted: list[int], i: int, k: int, scale: float) -> list[int]:
    """The k accepted frames (not i) nearest to frame i by `view_distance` of the given cameras."""
    others = [j for j in accepted if j != i]
    return sorted(sorted(others, key=lambda j: view_distance(c2w_given[i], c2w_given[j], scale))[:k])


def _normalised(pix: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels [M, 2] → normalised image coordinates (K⁻¹ [u, v, 1] without the 1)."""
    return (pix - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])


def epipolar_inliers(pix_a: np.ndarray, K_a: np.ndarray, pix_b: np.ndarray, K_b: np.ndarray,
                     threshold_px: float) -> np.ndarray:
    """[M] bool: the matches a → b that one essential matrix explains (RANSAC, threshold in pixels;
    OpenCV seeds its RANSAC itself, so the same matches give the same answer)."""
    f = 0.25 * (K_a[0, 0] + K_a[1, 1] + K_b[0, 0] + K_b[1, 1])
    _, inl = cv2.findEssentialMat(_normalised(pix_a, K_a), _normalised(pix_b, K_b), np.eye(3), cv2.RANSAC,
                                  0.999, threshold_px / f)
    return np.zeros(len(pix_a), bool) if inl is None else inl.ravel() > 0


def predicted_angle_deg(X_world: np.ndarray, pix: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """[M] angle (degrees) between each pixel's ray in camera c2w and the direction to its point X."""
    w2c = np.linalg.inv(c2w)
    p = X_world @ w2c[:3, :3].T + w2c[:3, 3]
    ray = np.concatenate([_normalised(pix, K), np.ones((len(pix), 1))], 1)
    cos = np.sum(p * ray, 1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(ray, axis=1) + 1e-30)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


class PairFlows:
    """`match` for verified_matches: DIS flow matches whose two flows (a → b and b → a) are kept
    from the pair (i, j) until the pair (j, i) has used them, so each is computed once."""

    def __init__(self, pairs: list[tuple[int, int]], images: list[np.ndarray]):
        self._reverse_wanted = {(j, i) for i, j in pairs} & set(pairs)
        self._images = {id(img): k for k, img in enumerate(images)}
        self._kept: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, img_a: np.ndarray, img_b: np.ndarray, pix_a: np.ndarray, method: str):
        i, j = self._images[id(img_a)], self._images[id(img_b)]
        if (j, i) in self._kept:
            f_ba, f_ab = self._kept.pop((j, i))
        else:
            f_ab, f_ba = dis_flows(img_a, img_b)
            if (i, j) in self._reverse_wanted:
                self._kept[(i, j)] = (f_ab, f_ba)
        return flow_matches(f_ab, f_ba, pix_a)


def verified_matches(frames: list[FramePoints], world_points: dict[int, np.ndarray], c2w: np.ndarray,
                     accepted: list[int], cfg: BundleConfig, scale: float, seed: int,
                     match: Callable | None = None) -> BundleMatches:
    """Flow matches of each accepted frame's pixels into its neighbours, kept where the pair's
    essential-matrix RANSAC agrees and where the aligned cameras and depth put them (`max_angle_deg`).
    world_points[i] are frame i's aligned points (one per row of frames[i].pix): each match's start
    inverse depth is its point's depth in camera c2w[i]. `match(image_a, image_b, pix_a, "flow")` →
    (pix_b, rows) finds the matches (default: DIS flow, each pair's flows computed once, `PairFlows`;
    tests pass exact ones)."""
    rng = np.random.default_rng(seed)
    given = np.stack([f.c2w_given for f in frames])
    conf_max = max(max(float(frames[k].conf.max()) for k in accepted), 1e-12)  # one scale for all frames
    if match is None:
        pairs = [(i, j) for i in accepted for j in neighbours(given, accepted, i, cfg.neighbours, scale)]
        match = PairFlows(pairs, [f.image for f in frames])
    cols: list[list[np.ndarray]] = [[], [], [], [], [], []]
    kept = dropped = 0
    for i in accepted:
        f = frames[i]
        sel = np.sort(rng.choice(len(f.xyz), min(cfg.points, len(f.xyz)), replace=False))
        w2c = np.linalg.inv(c2w[i])
        z = world_points[i][sel] @ w2c[2, :3] + w2c[2, 3]
        pix = f.pix[sel].astype(np.float64)
        conf = f.conf[sel] / conf_max
        for j in neighbours(given, accepted, i, cfg.neighbours, scale):
            q, rows = match(f.image, frames[j].image, f.pix[sel], "flow")
            front = z[rows] > 0
            q, rows = q[front], rows[front]
            ok = epipolar_inliers(pix[rows], f.K, q, frames[j].K, cfg.ransac_px) if len(rows) >= 5 else \
                np.zeros(len(rows), bool)
            ok &= predicted_angle_deg(world_points[i][sel][rows], q, frames[j].K, c2w[j]) <= cfg.max_angle_deg
            if ok.sum() < cfg.min_matches or ok.sum() < cfg.min_inlier_frac * len(rows):
                dropped += 1
                continue
            kept += 1
            n = int(ok.sum())
            for c, v in zip(cols, (np.full(n, i), np.full(n, j), pix[rows[ok]], q[ok], 1.0 / z[rows[ok]],
                                   conf[rows[ok]])):
                c.append(v)
    if not kept:
        return BundleMatches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros((0, 2)),
                             np.zeros(0), 0, dropped)
    host, target, pix, obs, inv_depth, weight = (np.concatenate(c) for c in cols)
    return BundleMatches(host, target, pix, obs, inv_depth, kept, dropped, weight)


# --------------------------------------------------------------------------- the energy


def _skew(a: np.ndarray) -> np.ndarray:
    """[M, 3] → [M, 3, 3] with _skew(a) @ w = a × w."""
    z = np.zeros(len(a))
    return np.stack([np.stack([z, -a[:, 2], a[:, 1]], -1), np.stack([a[:, 2], z, -a[:, 0]], -1),
                     np.stack([-a[:, 1], a[:, 0], z], -1)], 1)


@dataclass
class _Problem:
    """The fixed data of one bundle adjustment (float64, per match)."""

    Ks: np.ndarray  # [N, 3, 3] per frame
    host: np.ndarray
    target: np.ndarray
    bearing: np.ndarray  # [M, 3] K_h⁻¹ [u, v, 1]
    obs: np.ndarray  # [M, 2]
    log_rho0: np.ndarray  # [M]
    weight: np.ndarray  # [M] per match (the host pixel's relative confidence)
    c_prior: np.ndarray | None  # [N, 3] or None
    sigma_c: float
    sigma_d: float


def _problem(m: BundleMatches, Ks: np.ndarray, c_prior: np.ndarray | None, sigma_c: float,
             sigma_d: float) -> _Problem:
    """The fixed data of the energy: each match's host bearing and start log inverse depth."""
    Kinv = np.linalg.inv(Ks)
    uv1 = np.concatenate([m.pix, np.ones((len(m.pix), 1))], 1)
    bearing = np.einsum("mij,mj->mi", Kinv[m.host], uv1)
    weight = np.ones(len(m.host)) if m.weight is None else m.weight.astype(np.float64)
    return _Problem(Ks, m.host, m.target, bearing, m.obs, np.log(m.inv_depth), weight, c_prior, sigma_c, sigma_d)


def reprojection(pb: _Problem, R: np.ndarray, c: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pixel residuals [M, 2], host ray in the world a [M, 3], point X [M, 3], X in the target camera
    p [M, 3]). A point behind its target camera (`_behind`) gets a finite residual that means nothing."""
    a = np.einsum("mij,mj->mi", R[pb.host], pb.bearing)
    X = c[pb.host] + a / rho[:, None]
    p = np.einsum("mji,mj->mi", R[pb.target], X - c[pb.target])  # R_tᵀ (X − c_t)
    K = pb.Ks[pb.target]
    z = np.where(_behind(p), 1.0, p[:, 2])
    uv = np.stack([K[:, 0, 0] * p[:, 0] / z + K[:, 0, 2], K[:, 1, 1] * p[:, 1] / z + K[:, 1, 2]], 1)
    return uv - pb.obs, a, X, p


def _behind(p: np.ndarray) -> np.ndarray:
    return p[:, 2] <= 1e-12


def _jacobians(pb: _Problem, R: np.ndarray, c: np.ndarray, rho: np.ndarray,
               proj: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals and their derivatives for left updates R ← exp(ω) R, c ← c + v of host and target:
    (r [M, 2], J_cam [M, 2, 12] (host ω, v, target ω, v), J_rho [M, 2]). proj: `reprojection` at
    (R, c, rho) when the caller has it."""
    r, a, X, p = reprojection(pb, R, c, rho) if proj is None else proj
    K = pb.Ks[pb.target]
    M = len(r)
    behind = _behind(p)
    iz = np.where(behind, 0.0, 1.0 / np.where(behind, 1.0, p[:, 2]))  # no rows for a point behind the camera
    Jp = np.zeros((M, 2, 3))  # d(uv)/dp
    Jp[:, 0, 0], Jp[:, 0, 2] = K[:, 0, 0] * iz, -K[:, 0, 0] * p[:, 0] * iz**2
    Jp[:, 1, 1], Jp[:, 1, 2] = K[:, 1, 1] * iz, -K[:, 1, 1] * p[:, 1] * iz**2
    JX = np.einsum("mab,mcb->mac", Jp, R[pb.target])  # d(uv)/dX = Jp R_tᵀ
    J_host = np.concatenate([-JX @ _skew(a / rho[:, None]), JX], 2)
    J_target = np.concatenate([JX @ _skew(X - c[pb.target]), -JX], 2)
    J_rho = np.einsum("mab,mb->ma", JX, -a / rho[:, None] ** 2)
    return r, np.concatenate([J_host, J_target], 2), J_rho


def _robust(e: np.ndarray, sigma: float, tukey: bool) -> tuple[np.ndarray, np.ndarray]:
    """IRLS weights of normalised residuals e / σ, and each residual's ρ."""
    u = e / sigma
    if tukey:
        k = 4.685
        inside = u < k
        w = np.where(inside, (1.0 - (u / k) ** 2) ** 2, 0.0)
        rho = np.where(inside, k**2 / 6 * (1.0 - (1.0 - (u / k) ** 2) ** 3), k**2 / 6)
    else:
        k = 1.345
        w = np.where(u <= k, 1.0, k / np.maximum(u, 1e-30))
        rho = np.where(u <= k, 0.5 * u**2, k * u - 0.5 * k**2)
    return w, rho


def _energy(pb: _Problem, R, c, rho, sigma: float, tukey: bool | None, free: list[int],
            proj: tuple | None = None) -> float:
    """E at (R, c, rho); tukey None = plain least squares (σ = 1). A point behind the camera that
    sees it makes E infinite (never a better solution), except under Tukey's biweight, where it costs
    the ceiling k²/6 like any other outlier (one already dropped must not block the steps). proj:
    `reprojection` at (R, c, rho) when the caller has it."""
    r, _, _, p = reprojection(pb, R, c, rho) if proj is None else proj
    behind = _behind(p)
    if behind.any() and not tukey:
        return float("inf")
    e = np.linalg.norm(r, axis=1)
    if tukey is None:
        data = 0.5 * float(np.sum(pb.weight * e**2))
    else:
        loss = _robust(e, sigma, tukey)[1]
        loss[behind] = 4.685**2 / 6
        data = float(np.sum(pb.weight * loss))
    depth = 0.5 * float(np.sum(((np.log(rho) - pb.log_rho0) / pb.sigma_d) ** 2))
    centre = 0.0 if pb.c_prior is None else 0.5 * float(np.sum(((c[free] - pb.c_prior[free]) / pb.sigma_c) ** 2))
    return data + depth + centre


def linked_to_gauge(m: BundleMatches, accepted: list[int]) -> list[int]:
    """The accepted frames that pairs of `m` link, directly or through others, to the gauge
    (accepted[0]); the others have nothing in the energy but the priors (a free rotation)."""
    linked, grew = {accepted[0]}, True
    edges = set(zip(m.host.tolist(), m.target.tolist()))
    while grew:
        new = {b for a, b in edges if a in linked} | {a for a, b in edges if b in linked}
        grew = bool(new - linked)
        linked |= new
    return [k for k in accepted if k in linked]


def _reduced_system(pb: _Problem, R: np.ndarray, c: np.ndarray, rho: np.ndarray, proj: tuple, w: np.ndarray,
                    free: list[int], col: np.ndarray, pair_slices: list[np.ndarray], pair_cols: np.ndarray):
    """The camera system with every inverse depth eliminated: (S [6F, 6F], g [6F], and per match
    H_cr [M, 12], H_rr [M], g_r [M] for the back-substitution)."""
    r, Jc, Jr = _jacobians(pb, R, c, rho, proj)
    H_rr = np.einsum("m,ma,ma->m", w, Jr, Jr) + 1.0 / (rho * pb.sigma_d) ** 2
    g_r = np.einsum("m,ma,ma->m", w, Jr, r) + (np.log(rho) - pb.log_rho0) / (pb.sigma_d**2 * rho)
    H_cr = np.einsum("m,mai,ma->mi", w, Jc, Jr)
    g_c = np.einsum("m,mai,ma->mi", w, Jc, r) - H_cr * (g_r / H_rr)[:, None]
    S, g = np.zeros((6 * len(free), 6 * len(free))), np.zeros(6 * len(free))
    for sel, idx in zip(pair_slices, pair_cols):  # summed per frame pair: one 12 × 12 block each
        S_p = np.einsum("mai,maj->ij", w[sel, None, None] * Jc[sel], Jc[sel]) \
            - np.einsum("mi,mj->ij", H_cr[sel] / H_rr[sel, None], H_cr[sel])
        ok = idx >= 0
        S[np.ix_(idx[ok], idx[ok])] += S_p[np.ix_(ok, ok)]
        g[idx[ok]] += g_c[sel].sum(0)[ok]
    if pb.c_prior is not None:
        for k in free:
            S[col[k] + 3:col[k] + 6, col[k] + 3:col[k] + 6] += np.eye(3) / pb.sigma_c**2
            g[col[k] + 3:col[k] + 6] += (c[k] - pb.c_prior[k]) / pb.sigma_c**2
    return S, g, H_cr, H_rr, g_r


def _pair_layout(m: BundleMatches, n: int, col: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Rows of each (host, target) pair, and the pair's 12 camera columns (−1: the gauge's)."""
    pairs, inv = np.unique(m.host * n + m.target, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(pairs) + 1))
    cols = np.concatenate([col[pairs // n, None] + np.arange(6), col[pairs % n, None] + np.arange(6)], 1)
    cols[:, :6][col[pairs // n] < 0] = -1
    cols[:, 6:][col[pairs % n] < 0] = -1
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])], cols


def _subset(m: BundleMatches, keep: np.ndarray) -> BundleMatches:
    return BundleMatches(m.host[keep], m.target[keep], m.pix[keep], m.obs[keep], m.inv_depth[keep], m.pairs,
                         m.pairs_dropped, None if m.weight is None else m.weight[keep])


def bundle_adjust(c2w: np.ndarray, accepted: list[int], Ks: np.ndarray, m: BundleMatches,
                  c_prior: np.ndarray | None, sigma_c: float, cfg: BundleConfig,
                  robust: bool = True, keep_size: bool = True) -> tuple[np.ndarray, BundleStats]:
    """c2w [N, 4, 4] (the fitted cameras) with the cameras of the accepted frames linked to the gauge
    (accepted[0], fixed) re-solved; every other frame unchanged (BundleStats.unlinked names the
    accepted ones left out). Ks [N, 3, 3]; c_prior [N, 3] the given centres (None: no centre prior),
    σ_c in scene units. keep_size: the solved path is scaled to the size of the fitted one over the
    linked frames (`keep_path_size`). robust False: plain least squares (the oracle's energy, for tests)."""
    t0 = time.perf_counter()
    linked = linked_to_gauge(m, accepted)
    unlinked = [k for k in accepted if k not in linked]
    m = _subset(m, np.isin(m.host, linked))
    if len(m.host) == 0:
        return c2w.copy(), BundleStats(False, "no verified matches linked to frame 0", 0, m.pairs_dropped,
                                       unlinked=unlinked)
    pb = _problem(m, np.asarray(Ks, np.float64), c_prior, sigma_c, cfg.depth_sigma)
    n, free = len(c2w), linked[1:]
    col = np.full(n, -1)
    col[free] = np.arange(len(free)) * 6
    pair_slices, pair_cols = _pair_layout(m, n, col)
    R, c = c2w[:, :3, :3].astype(np.float64).copy(), c2w[:, :3, 3].astype(np.float64).copy()
    rho = m.inv_depth.astype(np.float64).copy()
    lam, steps, before = 1e-3, 0, float("nan")
    for it in range(cfg.iters):
        proj = reprojection(pb, R, c, rho)
        e, behind = np.linalg.norm(proj[0], axis=1), _behind(proj[3])
        if it == 0:
            before = float(np.median(e))
        sigma = max(1.4826 * float(np.median(e[~behind])), cfg.floor_px) if (~behind).any() else cfg.floor_px
        tukey = (it >= cfg.iters // 2) if robust else None
        w = pb.weight * ((_robust(e, sigma, tukey)[0] / sigma**2) if robust else 1.0) * ~behind
        S, g, H_cr, H_rr, g_r = _reduced_system(pb, R, c, rho, proj, w, free, col, pair_slices, pair_cols)
        E0 = _energy(pb, R, c, rho, sigma, tukey, free, proj)
        # a camera whose matches all lost their weight (Tukey) keeps a tiny diagonal: no update, no singularity
        floor = 1e-12 * max(float(np.mean(np.diag(S))), 1e-30)
        for _ in range(10):  # Levenberg–Marquardt: damp until the energy falls
            d = np.linalg.solve(S + np.diag(lam * np.diag(S) + floor), -g)
            d_cam = np.zeros((n, 6))
            d_cam[free] = d.reshape(-1, 6)
            d_rho = -(g_r + np.einsum("mi,mi->m", H_cr, np.concatenate([d_cam[pb.host], d_cam[pb.target]], 1))) / H_rr
            R_new, c_new = R.copy(), c + d_cam[:, 3:]
            R_new[free] = Rotation.from_rotvec(d_cam[free, :3]).as_matrix() @ R[free]
            rho_new = np.maximum(rho + d_rho, 0.2 * rho)  # a point may not jump behind its host camera
            if _energy(pb, R_new, c_new, rho_new, sigma, tukey, free) < E0:
                R, c, rho, steps = R_new, c_new, rho_new, steps + 1
                lam = max(lam / 3.0, 1e-7)
                break
            lam *= 5.0
        else:
            break
        if np.abs(d).max() < 1e-9:
            break
    out = c2w.astype(np.float64).copy()
    out[:, :3, :3], out[:, :3, 3] = R, c
    after = float(np.median(np.linalg.norm(reprojection(pb, R, c, rho)[0], axis=1)))
    path_scale = 1.0
    if keep_size:
        out, path_scale = keep_path_size(out, c2w, linked)
    return out, BundleStats(True, "", m.pairs, m.pairs_dropped, len(m.host), before, after, steps,
                            time.perf_counter() - t0, path_scale, unlinked)


def keep_path_size(c2w_adjusted: np.ndarray, c2w_fitted: np.ndarray, accepted: list[int]) -> tuple[np.ndarray, float]:
    """c2w_adjusted with its centres scaled about the gauge frame's (accepted[0]) so that the path has
    the size of the fitted one (least squares over the accepted frames), and the factor. The fitted
    cameras see the canonical cloud's points, so theirs are the cloud's units; the adjustment's own
    scale is set only by its priors and by the flow, which underestimates motion on small images
    (DIS at 64 × 48: 0.54–0.86 of the true displacement; at 128 × 96: 0.92–0.99)."""
    g = accepted[0]
    a = c2w_adjusted[accepted, :3, 3] - c2w_adjusted[g, :3, 3]
    f = c2w_fitted[accepted, :3, 3] - c2w_fitted[g, :3, 3]
    aa = float(np.sum(a * a))
    if aa <= 0.0:
        return c2w_adjusted, 1.0
    s = float(np.sum(a * f)) / aa
    if not s > 0:
        return c2w_adjusted, 1.0
    out = c2w_adjusted.copy()
    out[accepted, :3, 3] = c2w_adjusted[g, :3, 3] + s * a
    return out, s


def bundle_adjust_reference(c2w: np.ndarray, accepted: list[int], Ks: np.ndarray, m: BundleMatches,
                            c_prior: np.ndarray | None, sigma_c: float, depth_sigma: float) -> np.ndarray:
    """The same energy without robust weights, every unknown in one vector, through scipy's
    least_squares (slow; the test oracle of `bundle_adjust(..., robust=False)`)."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix, vstack

    pb = _problem(m, np.asarray(Ks, np.float64), c_prior, sigma_c, depth_sigma)
    free = list(accepted[1:])
    R0, c0 = c2w[:, :3, :3].astype(np.float64), c2w[:, :3, 3].astype(np.float64)

    def unpack(x: np.ndarray):
        cam = x[:6 * len(free)].reshape(-1, 6)
        R, c = R0.copy(), c0.copy()
        R[free] = Rotation.from_rotvec(cam[:, :3]).as_matrix() @ R0[free]
        c[free] = c0[free] + cam[:, 3:]
        return R, c, np.exp(x[6 * len(free):])

    def residuals(x: np.ndarray) -> np.ndarray:
        R, c, rho = unpack(x)
        parts = [(np.sqrt(pb.weight)[:, None] * reprojection(pb, R, c, rho)[0]).ravel(),
                 (np.log(rho) - pb.log_rho0) / pb.sigma_d]
        if pb.c_prior is not None:
            parts.append(((c[free] - pb.c_prior[free]) / pb.sigma_c).ravel())
        return np.concatenate(parts)

    # which unknowns each residual depends on (finite differences in groups; the derivatives are
    # scipy's own, not _jacobians')
    M, F = len(pb.host), len(free)
    slot = np.full(len(c2w), -1)
    slot[free] = np.arange(F)
    rows = [lil_matrix((2 * M, 6 * F + M), dtype=bool), lil_matrix((M, 6 * F + M), dtype=bool)]
    for m_i, (h, t) in enumerate(zip(pb.host, pb.target)):
        for k in (h, t):
            if slot[k] >= 0:
                rows[0][2 * m_i:2 * m_i + 2, 6 * slot[k]:6 * slot[k] + 6] = True
        rows[0][2 * m_i:2 * m_i + 2, 6 * F + m_i] = True
        rows[1][m_i, 6 * F + m_i] = True
    if pb.c_prior is not None:
        prior_rows = lil_matrix((3 * F, 6 * F + M), dtype=bool)
        for n_k in range(F):
            prior_rows[3 * n_k:3 * n_k + 3, 6 * n_k + 3:6 * n_k + 6] = True
        rows.append(prior_rows)
    x0 = np.concatenate([np.zeros(6 * F), pb.log_rho0])
    sol = least_squares(residuals, x0, method="trf", x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                        jac_sparsity=vstack(rows))
    R, c, _ = unpack(sol.x)
    out = c2w.astype(np.float64).copy()
    out[:, :3, :3], out[:, :3, 3] = R, c
    return out
