"""Config of eval_benchmark.py: what to run, how to score, where jobs run. Field docstrings = --help."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from worldstereo.launch import LaunchConfig


@dataclass
class ScoreConfig:
    """How reconstructions are aligned and scored (definitions in docs/metrics.md)."""

    tau: Optional[float] = None
    """F-score threshold τ in GT units (metres); default tau_rel × the median GT depth of the input view."""
    tau_rel: float = 0.02
    """τ as a fraction of the median GT depth when --tau is not given."""
    auc_tau_max: float = 2.0
    """Upper end of the F-score AUC, as a multiple of τ."""
    icp: bool = True
    """Refine the first-camera alignment with ICP with scale (Sim(3))."""
    icp_max_dist: float = 3.0
    """ICP drops pairs farther than this × τ."""
    gt_samples: int = 200_000
    """Synthetic scenes: GT surface samples seen from the run's cameras (regenerated per run)."""
    max_points: int = 1_000_000
    """Reconstructions with more points are randomly subsampled to this many before scoring."""
    frame_stride: int = 2
    """Image / quality metrics use every n-th frame of results.npz."""


@dataclass
class RunConfig:
    """How each manifest entry is run through the pipeline."""

    frames: int = 9
    """Frames per trajectory passed to run_pipeline.py (--frames)."""
    long_side: int = 256
    """Working size passed to run_pipeline.py (--long-side)."""
    extra: str = ""
    """Further run_pipeline.py arguments as one string, e.g. --extra "--order orbit up"."""
    reconstruct: bool = True
    """Also run reconstruct.py --scene (when that script exists) and score align/canonical.ply."""
    rerun: bool = False
    """Run the pipeline even when the scene already has exports/npz/results.npz (else reuse it)."""
    stage_timeout_min: int = 60
    """Per-stage subprocess limit in minutes."""


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
    """Where per-scene scores, scenes run from the manifest, logs and the table are written."""
    methods: tuple[str, ...] = ("pipeline", "reconstruct", "input_only", "naive_fusion")
    """Rows per scene: pipeline (cache.ply), reconstruct (align/canonical.ply), and the baselines
    input_only (input view unprojected) and naive_fusion (all frames unprojected, no alignment)."""
    force: bool = False
    """Rescore scenes whose scores already exist (otherwise the run resumes)."""
    score: ScoreConfig = field(default_factory=ScoreConfig)
    run: RunConfig = field(default_factory=RunConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
