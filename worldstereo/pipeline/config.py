"""Configs of the generation stages (prepare → plan → generate / update_cache per trajectory → export).

Field docstrings are the `--help` text (configs/pipeline.py composes them for the scripts).
run_pipeline.py saves the resolved config in scene.json; the single-stage scripts start from that
saved config, so a rerun behaves like the pipeline did. `validate` checks a config before anything
is written.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from worldstereo.cameras import PlannerConfig, TrajectoryName
from worldstereo.depth.mvs import MVSConfig
from worldstereo.errors import InputError
from worldstereo.generate.geometric import GeometricConfig
from worldstereo.memory.retrieval import RetrievalConfig
from worldstereo.panorama.planner import RELEASE_KINDS, STANDARD_KINDS, PanoPlannerConfig

Stage = Literal["prepare", "plan", "generate", "update_cache", "export"]
STAGES: tuple[str, ...] = typing.get_args(Stage)
STANDARD_TRAJECTORIES: tuple[str, ...] = typing.get_args(TrajectoryName)
Backend = Literal["geometric", "worldstereo-camera", "worldstereo-memory", "worldstereo-memory-dmd"]
DIFFUSION_BACKENDS: tuple[str, ...] = ("worldstereo-camera", "worldstereo-memory", "worldstereo-memory-dmd")
"""Backends that return pixels only: update_cache estimates the frames' depth (FrameDepthConfig)."""
DIFFUSION_FRAMES = 21  # WorldStereo 2.0 makes 21 keyframes per clip
DIFFUSION_ORDER: tuple[str, ...] = ("up", "right", "left")
"""Default order of the diffusion backends: trajectories that start at the input camera (their frame 0
is the input image); `orbit` circles around it and is refused for them."""


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
    panorama: Optional[Path] = None
    """A 360° equirectangular panorama (2:1 image) instead of --image (docs/panorama.md)."""
    pano_bank: Optional[Path] = None
    """The WorldStereo release's pano_bank folder (cameras.json + images/) instead of --image."""
    pano_depth: Optional[Path] = None
    """Distance along each ray of the panorama, equirect map of the panorama's size or the working size:
    .npy (metres), 16-bit .png (millimetres) or float .tif. Without it: the spherical prior (FALLBACK)."""
    pano_width: int = 2048
    """Working width of the panorama (height = width / 2)."""
    pano_view_scale: float = 1.0
    """Bank views are the release's 832×480 (120°×90°) scaled by this (--panorama only)."""


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
    pano_planner: Literal["release", "standard"] = "release"
    """Panorama input (`order` is not used): from the bank's views 0, 5, 8, the release's per-view set
    (right, left, aerial) or the standard set (orbit, up, right, left) with --frames and the standard angles."""
    pano_side_deg: float = 60.0
    """Panorama release set: how far `right` / `left` circle about the pivot."""
    pano_aerial_up_deg: float = 45.0
    """Panorama release set: elevation the `aerial` rises to about the pivot."""
    pano_aerial_side_deg: float = 60.0
    """Panorama release set: how far the `aerial` then circles right at that height."""


@dataclass
class FrameDepthConfig:
    """Depth of frames from a pixel-only backend (WorldStereo models, imported videos), made by
    update_cache: plane-sweep stereo along the planned cameras or a local depth model, then a robust
    Sim(3) onto the cache."""

    frame_depth_source: Literal["mvs", "model"] = "mvs"
    """mvs: plane-sweep stereo along the planned cameras (metric by construction, no weights).
    model: a local depth model per frame (--frame-depth-model, else the input's --depth-model, read
    as --depth-model-output says), each frame's output fitted to the cache render at its camera
    (robust scale and shift, in inverse depth for disparity models; depth/anchor.py); a frame that
    sees too little of the cache cannot be made metric and is rejected."""
    frame_depth_model: Optional[Path] = None
    """Local depth model folder for --frame-depth-source model (default: the input's --depth-model)."""

    stereo_planes: int = MVSConfig.planes
    """Depth planes of the plane sweep (uniform in inverse depth over the triangulated range)."""
    stereo_neighbours: int = MVSConfig.neighbours
    """Frames of the same trajectory each frame is matched against (nearest in index)."""
    min_valid_px: int = 200
    """A frame with fewer stereo depth pixels than this is rejected (not merged into the cache)."""
    max_rel_rmse: float = 0.05
    """A frame whose Umeyama residual after alignment exceeds this fraction of its median depth is rejected."""
    min_inlier_ratio: float = 0.5
    """A frame whose robust fit keeps fewer correspondences than this fraction is rejected."""

    def mvs(self) -> MVSConfig:
        return MVSConfig(planes=self.stereo_planes, neighbours=self.stereo_neighbours)


@dataclass
class GeneratorConfig:
    """The video generator behind the generator protocol."""

    backend: Backend = "geometric"
    """geometric: CPU, no weights (cache render + reference transfer + hole filling).
    worldstereo-camera / worldstereo-memory / worldstereo-memory-dmd: the released WorldStereo 2.0
    models from --weights over --base-model (a GPU; 21 frames per trajectory; docs/worldstereo_model.md).
    Also given as --generator NAME."""
    geometric: GeometricConfig = field(default_factory=GeometricConfig)
    fps: int = 12
    """Frame rate of the written videos."""
    weights: Optional[Path] = None
    """WorldStereo 2.0 weights: the release root (one folder per variant) or a variant folder
    (config.json + model.safetensors). Local only; nothing is downloaded."""
    base_model: Optional[Path] = None
    """Local Wan2.1-I2V-14B-480P-Diffusers folder the WorldStereo weights apply over."""
    prompt: str = ""
    """Text condition of the WorldStereo models (empty: --prompt-file, else no text)."""
    prompt_file: Optional[Path] = None
    """A release prompt.json ({"prompt": "..."}) read when --prompt is empty."""
    prompt_embeds: Optional[Path] = None
    """Precomputed text embeddings (safetensors: `prompt_embeds` [1, 512, D], and `negative_prompt_embeds`
    for the 40-step variants) used instead of --prompt: the text encoder is then never loaded."""
    device: str = "cuda"
    """Torch device of the WorldStereo models (cpu only for tiny test models)."""
    offload: bool = False
    """Keep each WorldStereo model on the CPU between its uses (48 GB cards; measured peak 43.6 GiB)."""
    frame_depth: FrameDepthConfig = field(default_factory=FrameDepthConfig)


@dataclass
class GenerationConfig:
    """Everything the generation stages need; saved in scene.json."""

    input: InputConfig = field(default_factory=InputConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)


def custom_trajectory_name(path: Path) -> str:
    """A custom trajectory's name: the file's stem, or its folder's name for a generic file name
    (WorldStereo's renders/traj_up/camera.json → traj_up)."""
    path = Path(path)
    return path.parent.name if path.stem in ("camera", "cameras", "cam_info") and path.parent.name else path.stem


def is_panorama(cfg: InputConfig) -> bool:
    """True when the input is a panorama (--panorama or --pano-bank)."""
    return cfg.panorama is not None or cfg.pano_bank is not None


def pano_planner_config(plan: PlanConfig) -> PanoPlannerConfig:
    """The panorama planner's config from the plan flags (--frames and the standard angles shared)."""
    return PanoPlannerConfig(set=plan.pano_planner, frames=plan.planner.frames, side_deg=plan.pano_side_deg,
                             aerial_up_deg=plan.pano_aerial_up_deg, aerial_side_deg=plan.pano_aerial_side_deg,
                             standard=plan.planner)


def trajectory_names(cfg: GenerationConfig) -> list[str]:
    """Planned trajectories in generation order: the standard ones (for a panorama, the panorama
    planner's view{k}_{kind}), then the custom files."""
    if is_panorama(cfg.input):
        pcfg = pano_planner_config(cfg.plan)
        kinds = RELEASE_KINDS if pcfg.set == "release" else STANDARD_KINDS
        names = [f"view{k}_{kind}" for kind in kinds for k in range(len(pcfg.views))]
    else:
        names = list(cfg.plan.order)
    return names + [custom_trajectory_name(p) for p in cfg.plan.custom]


def validate(cfg: GenerationConfig) -> None:
    """One-line InputError for a config no stage could run with; called before anything is written."""
    inp = cfg.input
    if not 16 <= inp.long_side <= 8192:
        raise InputError(None, f"--long-side must be between 16 and 8192 pixels, got {inp.long_side}")
    if inp.intrinsics is not None:
        if inp.fov_deg is not None:
            raise InputError(None, "--intrinsics and --fov-deg both given: give one of them, not both")
        fx, fy, cx, cy = inp.intrinsics
        if not all(math.isfinite(v) for v in inp.intrinsics):
            raise InputError(None, f"--intrinsics must be finite numbers, got {' '.join(map(str, inp.intrinsics))}")
        if fx <= 0 or fy <= 0:
            raise InputError(None, f"--intrinsics: focal lengths must be positive, got fx={fx} fy={fy}")
    if inp.fov_deg is not None and not (math.isfinite(inp.fov_deg) and 1.0 <= inp.fov_deg <= 179.0):
        raise InputError(None, f"--fov-deg must be from 1 to 179 degrees, got {inp.fov_deg}")
    if not (math.isfinite(inp.median_depth_m) and inp.median_depth_m > 0):
        raise InputError(None, f"--median-depth-m must be a positive number of metres, got {inp.median_depth_m}")
    _validate_panorama(inp)
    _validate_plan(cfg)
    if cfg.memory.keyframes < 1:
        raise InputError(None, f"--keyframes must be at least 1, got {cfg.memory.keyframes}")
    if cfg.generator.fps < 1:
        raise InputError(None, f"--fps must be at least 1, got {cfg.generator.fps}")
    if cfg.generator.backend in DIFFUSION_BACKENDS:
        _validate_diffusion(cfg)
    _validate_frame_depth(cfg)


def frame_depth_model_dir(cfg: GenerationConfig) -> Optional[Path]:
    """The depth model folder update_cache runs on pixel-only frames (None: stereo)."""
    fd = cfg.generator.frame_depth
    if fd.frame_depth_source != "model":
        return None
    return fd.frame_depth_model or cfg.input.depth_model


def _validate_frame_depth(cfg: GenerationConfig) -> None:
    fd = cfg.generator.frame_depth
    if fd.frame_depth_source != "model":
        if fd.frame_depth_model is not None:
            raise InputError(fd.frame_depth_model, "--frame-depth-model is used with --frame-depth-source model")
        return
    model_dir = frame_depth_model_dir(cfg)
    if model_dir is None:
        raise InputError(None, "--frame-depth-source model needs --frame-depth-model DIR (or the input's "
                               "--depth-model DIR): a local depth model folder")
    if not Path(model_dir).expanduser().is_dir():
        raise InputError(model_dir, "depth model folder not found")


def _validate_panorama(inp: InputConfig) -> None:
    given = [f for f, v in (("--image", inp.image), ("--example", inp.example), ("--panorama", inp.panorama),
                            ("--pano-bank", inp.pano_bank)) if v is not None]
    if len(given) > 1:
        raise InputError(None, f"{' and '.join(given)} both given: give one input")
    if inp.pano_depth is not None and not is_panorama(inp):
        raise InputError(inp.pano_depth, "--pano-depth needs --panorama or --pano-bank (a photo's depth is --depth)")
    if not is_panorama(inp):
        return
    if inp.depth is not None:
        raise InputError(inp.depth, "--depth is a photo's z-depth: give a panorama's distance map as --pano-depth")
    if inp.depth_model is not None and inp.pano_depth is not None:
        raise InputError(inp.depth_model, "--depth-model and --pano-depth both given: give one depth source")
    if inp.pano_width < 16 or inp.pano_width % 2:
        raise InputError(None, f"--pano-width must be an even number ≥ 16, got {inp.pano_width}")
    if not (math.isfinite(inp.pano_view_scale) and 0.01 <= inp.pano_view_scale <= 4):
        raise InputError(None, f"--pano-view-scale must be from 0.01 to 4, got {inp.pano_view_scale}")


def _validate_plan(cfg: GenerationConfig) -> None:
    unknown = [n for n in cfg.plan.order if n not in STANDARD_TRAJECTORIES]
    if unknown:
        raise InputError(None, f"--order: unknown trajectory {unknown[0]!r} (standard ones: "
                               f"{', '.join(STANDARD_TRAJECTORIES)}; others go in --custom FILE.json)")
    names = trajectory_names(cfg)
    if not names:
        raise InputError(None, "--order is empty and no --custom file is given: no trajectory to generate")
    for path in cfg.plan.custom:
        if custom_trajectory_name(path) in cfg.plan.order:
            raise InputError(path, f"custom trajectory is named like the standard '{custom_trajectory_name(path)}' "
                                   "in --order: rename the file or drop that name from --order")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(None, f"trajectory names must be unique, got {', '.join(dupes)} twice")
    if cfg.plan.planner.frames < 2:
        raise InputError(None, f"--frames must be at least 2, got {cfg.plan.planner.frames}")


def with_backend_defaults(cfg: GenerationConfig) -> GenerationConfig:
    """A diffusion backend's plan defaults: 21 frames and DIFFUSION_ORDER where --frames / --order kept
    their geometric defaults (an explicit other value is refused by `validate`)."""
    import dataclasses

    if cfg.generator.backend not in DIFFUSION_BACKENDS:
        return cfg
    plan = cfg.plan
    if plan.planner.frames == PlannerConfig().frames:
        plan = dataclasses.replace(plan, planner=dataclasses.replace(plan.planner, frames=DIFFUSION_FRAMES))
    if plan.order == PlanConfig().order:
        plan = dataclasses.replace(plan, order=DIFFUSION_ORDER)
    return dataclasses.replace(cfg, plan=plan)


def _validate_diffusion(cfg: GenerationConfig) -> None:
    """Plan, folders and device of a WorldStereo backend, checked before anything is written."""
    gen, name = cfg.generator, cfg.generator.backend
    if cfg.plan.planner.frames != DIFFUSION_FRAMES:
        raise InputError(None, f"--frames {cfg.plan.planner.frames}: {name} makes {DIFFUSION_FRAMES} frames per "
                               f"trajectory (leave --frames out or give {DIFFUSION_FRAMES})")
    if "orbit" in cfg.plan.order:
        raise InputError(None, f"--order: 'orbit' does not start at the input camera, which {name} uses as frame 0 "
                               f"(use {' '.join(DIFFUSION_ORDER)}, or a --custom trajectory that starts there)")
    if gen.weights is None or gen.base_model is None:
        raise InputError(None, f"--generator {name} needs --weights DIR and --base-model DIR (local folders)")
    from worldstereo.generate.worldstereo.config import (FULL_SIZE_WIDTH, check_base_model,
                                                         load_release_config)

    load_release_config(gen.weights, name)  # type: ignore[arg-type]
    base = check_base_model(gen.base_model, need_text=gen.prompt_embeds is None,
                            need_scheduler=name != "worldstereo-memory-dmd")
    if gen.prompt_embeds is not None:
        from worldstereo.generate.worldstereo.generator import load_prompt_embeds

        load_prompt_embeds(gen.prompt_embeds, need_negative=name != "worldstereo-memory-dmd")
    elif not gen.prompt and gen.prompt_file is not None:
        from worldstereo.generate.worldstereo.sampling import prompt_from_json

        prompt_from_json(gen.prompt_file)
    if base.inner_dim >= FULL_SIZE_WIDTH:
        _check_full_size_device(gen.device)


def _check_full_size_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(None, "no CUDA device: WorldStereo 2.0 (14B) needs a GPU (--offload for 48 GB cards); "
                               "without one, use --generator geometric")
    if device == "cpu":
        raise InputError(None, "--device cpu: the 14B WorldStereo model on CPU would take hours per trajectory; "
                               "use a CUDA GPU (--offload for 48 GB cards) or --generator geometric")


def with_absolute_paths(cfg: GenerationConfig) -> GenerationConfig:
    """The same config with every input path absolute, so the config saved in scene.json means the
    same files from any working directory."""
    import dataclasses
    import os

    def absolute(p: Optional[Path]) -> Optional[Path]:
        return None if p is None else Path(os.path.abspath(os.path.expanduser(str(p))))

    inp = dataclasses.replace(cfg.input, image=absolute(cfg.input.image), depth=absolute(cfg.input.depth),
                              depth_model=absolute(cfg.input.depth_model), panorama=absolute(cfg.input.panorama),
                              pano_bank=absolute(cfg.input.pano_bank), pano_depth=absolute(cfg.input.pano_depth))
    plan = dataclasses.replace(cfg.plan, custom=tuple(absolute(p) for p in cfg.plan.custom))
    gen = dataclasses.replace(cfg.generator, weights=absolute(cfg.generator.weights),
                              base_model=absolute(cfg.generator.base_model),
                              prompt_file=absolute(cfg.generator.prompt_file),
                              prompt_embeds=absolute(cfg.generator.prompt_embeds),
                              frame_depth=dataclasses.replace(
                                  cfg.generator.frame_depth,
                                  frame_depth_model=absolute(cfg.generator.frame_depth.frame_depth_model)))
    return dataclasses.replace(cfg, input=inp, plan=plan, generator=gen)
