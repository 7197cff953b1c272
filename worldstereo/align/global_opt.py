"""Global optimisation of all frames (preset extensive), anchored to the sequential result.

Block-coordinate (Gauss–Seidel) sweeps over the same energy as icp.py: each frame i ≠ 0 is
re-solved against the model of all *other* frames (its own voxel contribution is subtracted,
re-added after the solve), with dense matches to neighbours on both sides (i ± window), plus an
anchor term λ_a‖X − X_sequential‖² on its points that keeps the joint solution near the sequential
one. Frame 0 stays fixed (gauge). Each sweep lowers the joint energy; the anchor bounds the drift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from worldstereo.align.deform import DeformConfig
from worldstereo.align.icp import (AlignResult, ICPConfig, Matches, align_frame, gather_matches,
                                   merge_frame, p2plane_residual, world_pointmap)
from worldstereo.align.preprocess import FramePoints


@dataclass
class GlobalOptConfig:
    """Joint refinement of all frames after the sequential pass."""

    enabled: bool = False
    """Run it (the extensive preset turns it on)."""
    sweeps: int = 2
    """Passes over all frames."""
    window: int = 2
    """Dense matches to this many neighbours on each side."""
    anchor_weight: float = 0.05
    """λ_a: pull towards the sequential placement."""
    anchor_points: int = 2000
    """Points per frame in the anchor term."""
    iters: int = 8
    """Gauss–Newton iterations per frame per sweep."""


@dataclass
class GlobalOptStats:
    """Medians over frames ≠ 0 of each frame's |point-to-plane| residual to the model of all other
    frames (scene units), before and after the sweeps (align/metrics.json "global_opt")."""

    p2plane_before: float
    p2plane_after: float
    seconds: float


def global_optimise(frames: list[FramePoints], res: AlignResult, icp: ICPConfig, deform: DeformConfig,
                    cfg: GlobalOptConfig, scale: float, max_jump: float = 0.05,
                    progress: Callable | None = None) -> GlobalOptStats:
    """Refine `res` in place; returns the leave-one-out residuals before and after."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(icp.seed + 1)
    cut = icp.max_dist_final * scale * 2
    anchors = []
    for f, st in zip(frames, res.states):
        sel = rng.choice(len(f.xyz), min(cfg.anchor_points, len(f.xyz)), replace=False)
        anchors.append(Matches(f.xyz[sel], st.world(f.xyz[sel]), np.ones(len(sel))))
    before = _loo_residual(frames, res, cut)
    # the per-frame solve: start at the final cutoff, no hash refit (kept fixed)
    icp_g = replace(icp, max_iters=cfg.iters, min_iters=min(2, cfg.iters), max_dist_init=icp.max_dist_final * 2)
    deform_g = replace(deform, kind="grid" if deform.kind == "hashgrid" else deform.kind)
    maps: dict[int, np.ndarray] = {}

    def pointmap(j: int) -> np.ndarray:
        if j not in maps:
            maps[j] = world_pointmap(frames[j], res.states[j], max_jump)
        return maps[j]

    n = len(frames)
    ok = set(res.accepted())  # failed frames stay out of the model and of the matches
    jobs = [(s, i) for s in range(cfg.sweeps) for i in range(1, n) if i in ok]
    for sweep, i in (progress(jobs, total=len(jobs)) if progress else jobs):
        res.model.remove(res.contributions[i])
        nbrs = [j for j in range(max(0, i - cfg.window), min(n, i + cfg.window + 1)) if j != i and j in ok]
        matches = gather_matches(frames[i], [(frames[j], pointmap(j)) for j in nbrs], icp, rng)
        align_frame(frames[i], res.states[i], res.model, matches, icp_g, deform_g, scale,
                    anchor=anchors[i], anchor_weight=cfg.anchor_weight, pass_index=sweep + 1)
        res.contributions[i] = merge_frame(res.model, frames[i], res.states[i])
        maps.pop(i, None)
    after = _loo_residual(frames, res, cut)
    return GlobalOptStats(before, after, time.perf_counter() - t0)


def _loo_residual(frames: list[FramePoints], res: AlignResult, cutoff: float) -> float:
    """Median over frames of each frame's point-to-plane residual to the model without it."""
    vals = []
    for i in res.accepted()[1:]:
        res.model.remove(res.contributions[i])
        vals.append(p2plane_residual(res.states[i].world(frames[i].xyz), res.model, cutoff)[0])
        res.model.add(res.contributions[i], frames[i].index)
    return float(np.nanmedian(vals)) if vals else float("nan")
