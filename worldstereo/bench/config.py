"""Settings of a benchmark run that the library needs: how scenes are run and scored, which rows.

configs/eval.py composes these into the eval_benchmark.py CLI (field docstrings = --help)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from worldstereo.scene import config_hash

Method = Literal["pipeline", "world", "synthesised", "reconstruct", "input_only", "naive_fusion"]
METHODS: tuple[Method, ...] = ("pipeline", "world", "synthesised", "reconstruct", "input_only", "naive_fusion")


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
    """Also run reconstruct.py --scene and score align/canonical.ply."""
    rerun: bool = False
    """Run the pipeline even when the scene already has exports/npz/results.npz (else reuse it)."""
    stage_timeout_min: int = 60
    """Per-stage subprocess limit in minutes."""


@dataclass
class BenchSetup:
    """Everything a scene job needs besides its manifest entry; picklable, it travels to local or Slurm jobs."""

    score: ScoreConfig
    run: RunConfig
    methods: tuple[Method, ...]
    scripts_dir: Path
    """The folder holding run_pipeline.py and reconstruct.py (the repository root); stages run there."""

    def key(self) -> str:
        """Hash of what decides a scene's scores: a stored score with another key is redone."""
        return config_hash(self.score, self.run, list(self.methods))
