"""Config of eval_benchmark.py: what to run, how to score, where jobs run. Field docstrings = --help."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from worldstereo.bench.config import METHODS, Method, RunConfig, ScoreConfig
from worldstereo.launch import LaunchConfig

__all__ = ["EvalConfig", "RunConfig", "ScoreConfig"]


@dataclass
class EvalConfig:
    """Run and score every scene of a manifest (or score one finished scene) → a benchmark table."""

    manifest: Optional[Path] = None
    """manifest.json (utils.make_synthetic writes one): scenes to run and their ground truth."""
    scene: Optional[Path] = None
    """Score one finished scene folder instead of a manifest (needs --gt-points)."""
    gt_points: Optional[Path] = None
    """Ground-truth point cloud (PLY, x y z) for --scene, in the scene's world frame (input camera)."""
    out: Path = Path("bench/results")
    """Folder for per-scene scores, scenes run from the manifest, logs and the table (created; must be writable)."""
    methods: tuple[Method, ...] = METHODS
    """Rows per scene: pipeline (cache.ply), reconstruct (align/canonical.ply), and the baselines
    input_only (input view unprojected) and naive_fusion (all frames unprojected, no alignment)."""
    force: bool = False
    """Rescore scenes whose scores already exist (otherwise the run resumes)."""
    score: ScoreConfig = field(default_factory=ScoreConfig)
    run: RunConfig = field(default_factory=RunConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
