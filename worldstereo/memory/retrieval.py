"""Retrieval from the memory bank: volumetric frustum overlap × viewing-angle penalty."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.geometry import frustum_overlap, frustum_samples, viewing_angle_deg
from worldstereo.memory.bank import BankEntry


@dataclass
class RetrievalConfig:
    """How target frames pick their reference view."""

    sample_ratio: float = 0.25
    """Retrieve for F = N·ratio target frames sampled uniformly (paper: N/4); the others use the
    reference of the nearest sampled frame."""
    near: float = 0.1
    """Frustum near plane, as a fraction of the pivot depth."""
    far: float = 3.0
    """Frustum far plane, as a fraction of the pivot depth."""
    angle_sharpness: float = 5.0
    """Angle penalty clip(exp(k·(90° − angle)/180°), 0, 1): 1 up to 90° apart, then decaying."""
    samples: int = 2048
    """Volume samples per frustum for the overlap estimate."""


@dataclass
class Reference:
    """Which bank entry serves which target frame, and why."""

    frame: int
    sampled: bool
    ref_id: int
    score: float
    overlap: float
    angle_deg: float


def angle_penalty(angle_deg: float, sharpness: float) -> float:
    return float(np.clip(math.exp(sharpness * (90.0 - angle_deg) / 180.0), 0.0, 1.0))


def score_pair(target: Camera, ref: Camera, near: float, far: float, sharpness: float, unit: np.ndarray) -> tuple[float, float, float]:
    """(score, overlap, angle) of a reference for a target camera."""
    overlap = frustum_overlap(target, ref, near, far, unit)
    angle = viewing_angle_deg(target.c2w, ref.c2w)
    return overlap * angle_penalty(angle, sharpness), overlap, angle


def retrieve(targets: list[Camera], bank: list[BankEntry], pivot_depth: float, cfg: RetrievalConfig) -> list[Reference]:
    """One reference per target frame; retrieval runs on F = round(N·ratio) uniform samples."""
    n = len(targets)
    f = max(1, int(round(n * cfg.sample_ratio)))
    sampled = np.unique(np.round(np.linspace(0, n - 1, f)).astype(int))
    unit = frustum_samples(cfg.samples)
    near, far = cfg.near * pivot_depth, cfg.far * pivot_depth
    picks: dict[int, Reference] = {}
    for i in sampled:
        best = None
        for e in bank:
            score, overlap, angle = score_pair(targets[i], e.camera, near, far, cfg.angle_sharpness, unit)
            if best is None or score > best.score:
                best = Reference(int(i), True, e.id, score, overlap, angle)
        picks[int(i)] = best
    out = []
    for i in range(n):
        if i in picks:
            out.append(picks[i])
            continue
        j = int(sampled[np.argmin(np.abs(sampled - i))])
        r = picks[j]
        out.append(Reference(i, False, r.ref_id, r.score, r.overlap, r.angle_deg))
    return out
