"""Config of reconstruct.py: non-rigid alignment of a scene's frames into one canonical cloud.

Presets: fast (default: sequential ICP, control grid) and extensive (more iterations, a finer grid,
global optimisation). `python reconstruct.py --preset extensive --icp.max-iters 40` overrides a
preset's fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    preset: Literal["fast", "extensive"] = "fast"
    """Named defaults; flags given after it override its fields."""
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
    return ReconstructConfig(preset="fast")


def extensive() -> ReconstructConfig:
    return ReconstructConfig(
        preset="extensive",
        icp=ICPConfig(max_iters=40, corr=CorrespondenceConfig(frames=3, points=8000)),
        deform=DeformConfig(resolution=8),
        global_opt=GlobalOptConfig(enabled=True, sweeps=2),
        inverse=InverseConfig(resolution=14, samples_per_axis=18),
    )


PRESETS = {"fast": fast, "extensive": extensive}


def preset_from_args(args: list[str]) -> ReconstructConfig:
    """The preset named by `--preset X` / `--preset=X` in args (fast when absent)."""
    name = "fast"
    for k, a in enumerate(args):
        if a == "--preset" and k + 1 < len(args):
            name = args[k + 1]
        elif a.startswith("--preset="):
            name = a.split("=", 1)[1]
    return PRESETS.get(name, fast)()
