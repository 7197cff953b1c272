"""run_pipeline.py and the single-stage scripts: their command lines, composed from the library's
stage configs (worldstereo/pipeline/config.py holds the documented fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from worldstereo.launch import LaunchConfig
from worldstereo.pipeline.config import (STAGES, CacheConfig, GenerationConfig, GeneratorConfig, InputConfig,
                                         MemoryConfig, PlanConfig, Stage)

__all__ = ["STAGES", "CacheConfig", "GenerationConfig", "GeneratorConfig", "InputConfig", "MemoryConfig",
           "PlanConfig", "RunPipeline", "Stage", "TrajectoryStageArgs"]


@dataclass
class RunPipeline:
    """Turn one photo into a consistent 3D world (videos, 3D cache, memory bank, results.npz)."""

    gen: GenerationConfig = field(default_factory=GenerationConfig)
    scene: Optional[Path] = None
    """Scene folder (default: scenes/<image name>, or scenes/<example>). With --images: the parent
    folder of one scene per image (default: scenes)."""
    until: Optional[Stage] = None
    """Stop after this stage (generate: after the first trajectory's video)."""
    force: tuple[Stage, ...] = ()
    """Rerun these stages even when their outputs are up to date (everything after them becomes stale
    and is rerun too)."""
    images: Optional[Path] = None
    """A text file with one image per line (`photo.jpg [depth=d.npy] [intrinsics=fx,fy,cx,cy] [fov=60]`):
    one job per image through the launcher; a rerun submits only unfinished scenes."""
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass
class TrajectoryStageArgs:
    """Arguments shared by the single-trajectory stage scripts (generate_video.py, update_cache.py)."""

    scene: Path = Path("")
    """Scene folder written by run_pipeline.py."""
    trajectory: str = "orbit"
    """Name of a planned trajectory (trajectories/<name>.json)."""
    force: bool = False
    """Redo the stage even when its outputs are up to date (later stages become stale)."""
    gen: GenerationConfig = field(default_factory=GenerationConfig)
