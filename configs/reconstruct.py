"""Config of reconstruct.py: non-rigid alignment of a scene's frames into one canonical cloud.

Presets: fast (default: sequential ICP, control grid) and extensive (more iterations, a finer grid,
global optimisation). `python reconstruct.py extensive --icp.max-iters 40` (or `--preset extensive`)
overrides a preset's fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from configs.presets import parse_with_presets

from worldstereo.align.deform import DeformConfig
from worldstereo.align.global_opt import GlobalOptConfig
from worldstereo.align.icp import CorrespondenceConfig, ICPConfig
from worldstereo.align.inverse import InverseConfig
from worldstereo.align.preprocess import PreprocessConfig


@dataclass
class ReconstructConfig:
    """Align inconsistent frames (exports/npz/results.npz) into align/canonical.ply."""

    scene: Path | None = None
    """Scene folder (ours, or a video_to_world / DA3 folder with exports/npz/results.npz)."""
    input_video: Path | None = None
    """An outside generated video; its frames and --depth-npz are written into the scene first."""
    depth_npz: Path | None = None
    """results.npz with depth and poses for --input-video."""
    cameras: Path | None = None
    """Trajectory JSON with the video's cameras (needed with --preprocess.depth-source model or mvs)."""
    force: bool = False
    """Recompute even when align/ is up to date."""
    tensorboard: bool = True
    """Write a TensorBoard log under align/tb."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    icp: ICPConfig = field(default_factory=ICPConfig)
    deform: DeformConfig = field(default_factory=DeformConfig)
    global_opt: GlobalOptConfig = field(default_factory=GlobalOptConfig)
    inverse: InverseConfig = field(default_factory=InverseConfig)


def fast() -> ReconstructConfig:
    return ReconstructConfig()


def extensive() -> ReconstructConfig:
    return ReconstructConfig(
        icp=ICPConfig(max_iters=40, corr=CorrespondenceConfig(frames=3, points=8000)),
        deform=DeformConfig(resolution=8),
        global_opt=GlobalOptConfig(enabled=True, sweeps=2),
        inverse=InverseConfig(resolution=14, samples_per_axis=18),
    )


PRESETS = {
    "fast": ("Sequential ICP on a coarse control grid (default).", fast()),
    "extensive": ("More ICP iterations, a finer grid, global optimisation.", extensive()),
}


def parse(argv: Sequence[str] | None = None) -> ReconstructConfig:
    """Parse reconstruct.py's command line: `[fast|extensive] --flags`."""
    return parse_with_presets(PRESETS, ReconstructConfig.__doc__ or "", argv)
