"""Configs of the generation stages (prepare → plan → generate / update_cache per trajectory → export).

Field docstrings are the `--help` text. run_pipeline.py saves the resolved config in scene.json;
the single-stage scripts start from that saved config, so a rerun behaves like the pipeline did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from worldstereo.cameras import PlannerConfig
from worldstereo.generate.geometric import GeometricConfig
from worldstereo.memory.retrieval import RetrievalConfig

StageName = Literal["prepare", "plan", "generate", "update_cache", "export"]
STAGES: tuple[str, ...] = ("prepare", "plan", "generate", "update_cache", "export")


@dataclass
class InputConfig:
    """Where the reference view, its camera and its depth come from."""

    image: Optional[Path] = None
    """Input photo (png/jpg, any size)."""
    example: Optional[Literal["motorcycle"]] = None
    """Use a bundled real example instead of --image (Middlebury 2014 motorcycle, metric GT depth)."""
    long_side: int = 512
    """Working size: the image is resized so its long side has this many pixels."""
    fov_deg: Optional[float] = None
    """Field of view along the long side, degrees (used when --intrinsics is absent)."""
    intrinsics: Optional[tuple[float, float, float, float]] = None
    """fx fy cx cy in pixels of the original image (scaled with the resize)."""
    depth: Optional[Path] = None
    """Depth of the input view: .npy (metres), 16-bit .png (millimetres) or float .tif (metres)."""
    depth_model: Optional[Path] = None
    """Local Hugging Face depth model folder (transformers AutoModelForDepthEstimation); never downloads."""
    depth_model_output: Literal["disparity", "depth", "metric"] = "disparity"
    """What the depth model predicts: relative disparity (Depth Anything, DPT), relative depth, or metres."""
    median_depth_m: float = 2.5
    """Median depth in metres assigned to relative depth (model or planar prior)."""
    default_fov_deg: float = 60.0
    """Field of view used when neither --fov-deg nor --intrinsics is given (a warning says so)."""


@dataclass
class CacheConfig:
    """The 3D cache: initialisation, alignment of generated frames, merging."""

    edge_rel_thresh: float = 0.04
    """Drop input points at depth discontinuities (relative jump to a neighbour above this)."""
    voxel_scale: float = 1.0
    """Merge voxel edge = this × the median point footprint of the input view."""
    min_overlap_px: int = 200
    """Fewer overlapping pixels than this: a frame is merged without alignment."""
    max_pairs: int = 4000
    """Correspondences per frame used by the robust Umeyama fit."""
    max_conf: float = 10.0
    """Confidence saturates here, so old points can still be revised."""


@dataclass
class MemoryConfig:
    """The memory bank and retrieval."""

    keyframes: int = 8
    """Frames per trajectory remembered in the bank (uniformly spaced)."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)


@dataclass
class PlanConfig:
    """Which trajectories, in which order, with which shapes."""

    order: tuple[str, ...] = ("orbit", "up", "right", "left")
    """Trajectories in generation order: later ones find more memory to retrieve."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    custom: tuple[Path, ...] = ()
    """Extra trajectory JSON files (ours, WorldStereo camera.json or Uni3C cam_info.json), run after `order`."""


@dataclass
class GeneratorConfig:
    """The video generator behind the generator protocol."""

    backend: Literal["geometric"] = "geometric"
    """geometric: CPU, no weights (cache render + reference transfer + hole filling)."""
    geometric: GeometricConfig = field(default_factory=GeometricConfig)
    fps: int = 12
    """Frame rate of the written videos."""


@dataclass
class GenerationConfig:
    """Everything the generation stages need; saved in scene.json."""

    input: InputConfig = field(default_factory=InputConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from its `dataclasses.asdict` form, ignoring unknown keys."""
    import typing

    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value)
        elif isinstance(value, list):
            value = tuple(value)
        if value is not None and f.name in ("image", "depth", "depth_model"):
            value = Path(value)
        if f.name == "custom":
            value = tuple(Path(v) for v in value)
        kwargs[f.name] = value
    return cls(**kwargs)
