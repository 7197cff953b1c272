"""Fit 3DGS / 2DGS to a scene's frames (exports/npz/results.npz), initialised from the canonical or
cache point cloud; write gs_<renderer>/ (checkpoints, renders, metrics.json, splats.ply, tb/).

    cfg = TrainerConfig(iterations=3000)
    result = train_gaussians(SceneDir("scenes/my"), "3dgs", cfg)

The loop is setup (`setup_training` → `TrainData` fixed for the run + `TrainState` that steps
change) / step (`train_step`) / log (`log_step`, `log_eval`); metrics.json is a `TrainMetrics`.

Deformation-aware training: when `warp(frame_idx, means [N,3]) -> means [N,3]` is given (or
`load_warp` finds align/deformations.npz from reconstruct.py), the canonical Gaussians are moved
into each frame before rendering it; novel views (trajectories, fly-through) render canonical.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from worldstereo.cameras import load_trajectory, scale_intrinsics
from worldstereo.console import info, progress, warn
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_dir, atomic_save, atomic_write_text
from worldstereo.io.ply import read_ply
from worldstereo.io.results import load_results
from worldstereo.io.video import check_video_writer, write_video
from worldstereo.render.camera import camera_centres
from worldstereo.render.gaussians import Backend, RenderOutput, rasterize
from worldstereo.scene import SceneDir, config_hash, file_digest
from worldstereo.splat.losses import distortion, lpips_if_available, normal_consistency, psnr, ssim
from worldstereo.splat.model import GaussianModel
from worldstereo.splat.ply import write_splats_ply
from worldstereo.splat.strategy import DensifyConfig, DensifyState, refine

Mode = Literal["3dgs", "2dgs"]
Warp = Callable[[int, Tensor], Tensor]


@dataclass
class OptimConfig:
    """Adam learning rates per parameter group."""

    means_lr: float = 1.6e-4
    """Initial learning rate of the positions, times the scene scale."""
    means_lr_final: float = 1.6e-6
    """Final position learning rate (exponential decay over the run), times the scene scale."""
    scales_lr: float = 5e-3
    """Learning rate of the log-scales."""
    quats_lr: float = 1e-3
    """Learning rate of the rotations."""
    opacity_lr: float = 5e-2
    """Learning rate of the opacity logits."""
    sh0_lr: float = 2.5e-3
    """Learning rate of the DC colour."""
    shN_lr: float = 2.5e-3 / 20
    """Learning rate of the higher-order SH coefficients."""


@dataclass
class LossConfig:
    """Weights of the loss terms."""

    ssim_weight: float = 0.2
    """L = (1 − w)·L1 + w·(1 − SSIM)."""
    normal_weight: float = 0.05
    """2DGS: weight of the normal-consistency term (rendered normals vs depth normals)."""
    normal_start: int = 1000
    """2DGS: step from which the normal term is on."""
    distortion_weight: float = 1.0
    """2DGS: weight of the depth-distortion term (depths in units of the scene scale). 2DGS's λ = 100
    acts on NDC depth (near 0.2), about 12× flatter per unit depth than ours at the scene scale, so
    ~1 here matches it. Held-out PSNR on the example after 800 steps: 21.8 dB at 100, 26.7 at 10,
    27.3 at 1, 27.6 at 0."""
    distortion_start: int = 500
    """2DGS: step from which the distortion term is on."""
    lpips_weight: float = 0.0
    """Weight of LPIPS; used only when its backbone weights are cached locally (never downloaded)."""


@dataclass
class DataConfig:
    """Which frames and points to train on."""

    long_side: int = 512
    """Downscale training images so their long side is at most this (never upscaled)."""
    holdout_every: int = 8
    """Hold out every k-th frame for evaluation (0: train on all)."""
    max_init_points: int = 100_000
    """Randomly subsample the initial point cloud to at most this many points."""
    init_opacity: float = 0.1
    """Opacity of the initial Gaussians."""
    use_canonical: bool = True
    """Initialise from align/canonical.ply when it exists (else cache.ply)."""
    use_deformation: bool = True
    """Warp Gaussians into each frame when align/ has inverse deformations."""


@dataclass
class OutputConfig:
    """What is written under gs_<renderer>/."""

    checkpoint_every: int = 1000
    """Save a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Keep only the newest this many checkpoints."""
    log_every: int = 50
    """TensorBoard scalars every this many steps."""
    render_trajectories: bool = True
    """Render every trajectories/*.json and the fly-through video."""
    video_fps: int = 24
    """Frame rate of the fly-through video."""


@dataclass
class TrainerConfig:
    """Gaussian-splat training of one renderer."""

    iterations: int = 10_000
    """Optimisation steps (one training view each)."""
    sh_degree: int = 3
    """Maximum SH degree (0–3)."""
    sh_every: int = 1000
    """Raise the active SH degree by one every this many steps."""
    backend: Backend = "auto"
    """Rasterizer: torch (our CPU implementation), gsplat (CUDA), auto (gsplat when on CUDA)."""
    tile: int = 4
    """Tile side of the CPU rasterizer in pixels (4 measured fastest at 256–512 px)."""
    device: str = "auto"
    """cpu, cuda or auto."""
    seed: int = 0
    """Random seed."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# --------------------------------------------------------------------------- data


@dataclass
class Views:
    """Training frames at training resolution."""

    images: Tensor  # [N, H, W, 3] float in [0, 1]
    w2c: Tensor  # [N, 4, 4]
    K: Tensor  # [N, 3, 3]
    width: int
    height: int


def training_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) of an image downscaled so its long side is at most `long_side` (never upscaled)."""
    s = min(1.0, long_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def load_views(scene: SceneDir, long_side: int) -> Views:
    """results.npz frames at training size, w2c padded to [N, 4, 4], K scaled to the new size."""
    r = load_results(scene.results_npz)
    N, H, W = r.depth.shape
    w, h = training_size(W, H, long_side)
    img = torch.from_numpy(r.image).float().div(255)
    if (w, h) != (W, H):
        img = F.interpolate(img.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", antialias=True,
                            align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)
    K = np.stack([scale_intrinsics(k, w / W, h / H) for k in r.K])
    w2c = np.tile(np.eye(4), (N, 1, 1))
    w2c[:, :3] = r.extrinsics_w2c
    return Views(img.contiguous(), torch.from_numpy(w2c).float(), torch.from_numpy(K).float(), w, h)


def split_frames(n: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(train, held-out) frame indices: every k-th frame (from k//2) is held out."""
    if holdout_every <= 1 or n < 3:
        return list(range(n)), []
    test = list(range(holdout_every // 2, n, holdout_every))
    return [i for i in range(n) if i not in test], test


def init_points(scene: SceneDir, cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """xyz [N, 3], rgb [N, 3] in [0, 1] from align/canonical.ply if present, else cache.ply."""
    canon = scene.align_dir / "canonical.ply"
    path = canon if cfg.use_canonical and canon.exists() else scene.cache_ply
    if not path.exists():
        raise InputError(path, "no point cloud to start from: run update_cache.py (or run_pipeline.py) first")
    v = read_ply(path)
    names = v.dtype.names or ()
    if not all(k in names for k in ("x", "y", "z")):
        raise InputError(path, "PLY has no x, y, z fields")
    xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32)
    if all(k in names for k in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.float32)
        rgb = rgb / 255.0 if v["red"].dtype == np.uint8 or rgb.max() > 1 else rgb
    else:
        rgb = np.full_like(xyz, 0.5)
    ok = np.isfinite(xyz).all(1)
    xyz, rgb = xyz[ok], rgb[ok]
    if len(xyz) == 0:
        raise InputError(path, "point cloud is empty")
    if len(xyz) > cfg.max_init_points:
        idx = np.random.default_rng(seed).choice(len(xyz), cfg.max_init_points, replace=False)
        xyz, rgb = xyz[idx], rgb[idx]
    return xyz, rgb, path


def scene_scale(views: Views, xyz: np.ndarray) -> float:
    """1.1 × the radius of the camera centres (3DGS), or the median point distance when the cameras
    barely move (a single photo's orbit)."""
    centres = camera_centres(views.w2c.double()).numpy()
    radius = 1.1 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
    median = float(np.median(np.linalg.norm(xyz - centres.mean(0), axis=1)))
    return max(radius, 0.5 * median, 1e-6)


def load_warp(scene_root: Path) -> Warp | None:
    """The inverse deformations of reconstruct.py (align/deformations.npz) as a warp; None when the
    scene has none (the reconstruct stage is optional)."""
    # imported here, not at the top: the align stack costs ~0.4 s and only scenes with
    # deformations need it
    from worldstereo.align.inverse import DEFORMATIONS_FILE, load_inverse_deformations

    if not (Path(scene_root) / "align" / DEFORMATIONS_FILE).exists():
        return None
    return load_inverse_deformations(scene_root)


def _covered(warp: Warp | None, ids: list[int]) -> list[int]:
    """Frames the warp knows (all of `ids` without a warp or when it does not say)."""
    known = getattr(warp, "frame_indices", None)
    return ids if warp is None or known is None else [i for i in ids if i in set(known)]


# --------------------------------------------------------------------------- metrics


@dataclass
class EvalMetrics:
    """Image metrics averaged over a set of frames."""

    psnr: float
    ssim: float
    frames: int
    lpips: float | None = None  # only when the LPIPS backbone is cached locally

    def to_json(self) -> dict:
        d = {"psnr": self.psnr, "ssim": self.ssim, "frames": self.frames}
        return d if self.lpips is None else {**d, "lpips": self.lpips}


@dataclass
class TrainMetrics:
    """What gs_<renderer>/metrics.json holds (same keys, same order)."""

    renderer: Mode
    steps: int
    gaussians: int
    train: EvalMetrics | None  # None: no frames in that split (written as {})
    heldout: EvalMetrics | None
    image_size: list[int]  # [width, height] of the training images
    init: str  # initial point cloud, relative to the scene folder
    deformation: bool  # trained with a per-frame warp
    backend: str
    lpips: str  # "on", or why not
    seconds: float = 0.0

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["train"] = self.train.to_json() if self.train else {}
        d["heldout"] = self.heldout.to_json() if self.heldout else {}
        return d


# --------------------------------------------------------------------------- training: operations


def render(model: GaussianModel, w2c: Tensor, K: Tensor, width: int, height: int, mode: Mode,
           cfg: TrainerConfig, sh_degree: int, means: Tensor | None = None,
           with_distortion: bool = False) -> RenderOutput:
    """Render the model (optionally with warped `means`) from one camera."""
    means = model.means if means is None else means
    extra = None
    if with_distortion:
        R, t = w2c[:3, :3], w2c[:3, 3]
        z = means @ R[2] + t[2]
        extra = (z * z)[:, None]
    return rasterize(means, model.quats, model.scales, model.opacities, model.sh, w2c, K, width, height,
                     mode=mode, sh_degree=sh_degree, extra=extra,
                     backend=cfg.backend, tile=cfg.tile)


def _optimizers(model: GaussianModel, cfg: OptimConfig, scale: float) -> dict[str, torch.optim.Optimizer]:
    lrs = {"means": cfg.means_lr * scale, "log_scales": cfg.scales_lr, "quats": cfg.quats_lr,
           "opacity_logits": cfg.opacity_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}
    return {k: torch.optim.Adam([model.params[k]], lr=lr, eps=1e-15) for k, lr in lrs.items()}


def means_lr(step: int, cfg: TrainerConfig, scale: float) -> float:
    """Position learning rate at `step` (1-based): exponential from means_lr to means_lr_final (× scale)."""
    t = (step - 1) / max(cfg.iterations - 1, 1)
    return math.exp((1 - t) * math.log(cfg.optim.means_lr * scale) + t * math.log(cfg.optim.means_lr_final * scale))


def active_sh_degree(step: int, cfg: TrainerConfig) -> int:
    """SH degree used at `step`: one more every `sh_every` steps, up to `sh_degree`."""
    return min(cfg.sh_degree, (step - 1) // max(cfg.sh_every, 1))


def distortion_on(step: int, mode: Mode, cfg: LossConfig) -> bool:
    return mode == "2dgs" and cfg.distortion_weight > 0 and step >= cfg.distortion_start


def image_loss(o: RenderOutput, gt: Tensor, K: Tensor, step: int, mode: Mode, cfg: LossConfig, scale: float,
               lpips_fn=None) -> tuple[Tensor, Tensor]:
    """(total loss, L1) of one rendered view against its image gt [H, W, 3]:
    (1 − w)·L1 + w·(1 − SSIM), plus the 2DGS normal and distortion terms and LPIPS when switched on."""
    l1 = (o.colour - gt).abs().mean()
    loss = (1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * (1 - ssim(o.colour, gt))
    if mode == "2dgs" and cfg.normal_weight > 0 and step >= cfg.normal_start:
        loss = loss + cfg.normal_weight * normal_consistency(o.normals, o.depth, o.alpha, K)
    if distortion_on(step, mode, cfg):
        loss = loss + cfg.distortion_weight * distortion(o.alpha, o.depth, o.extra) / scale ** 2
    if lpips_fn is not None and cfg.lpips_weight > 0:
        loss = loss + cfg.lpips_weight * lpips_fn(o.colour.permute(2, 0, 1)[None] * 2 - 1,
                                                  gt.permute(2, 0, 1)[None] * 2 - 1).mean()
    return loss, l1


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    steps: int
    n_gaussians: int
    metrics: TrainMetrics
    seconds: float
    outputs: list[Path]


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step_*.pt"))


def save_checkpoint(out: Path, step: int, model: GaussianModel, optimizers, meta: dict, keep: int) -> Path:
    path = out / "checkpoints" / f"step_{step:07d}.pt"
    blob = {"step": step, "params": model.raw(), "sh_degree": model.sh_degree,
            "optim": {k: o.state_dict() for k, o in optimizers.items()}, **meta}
    atomic_save(path, lambda p: torch.save(blob, p))
    for old in _checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def evaluate(model: GaussianModel, views: Views, frames: list[int], mode: Mode, cfg: TrainerConfig,
             warp: Warp | None, device, lpips_fn=None) -> EvalMetrics | None:
    """Mean PSNR / SSIM (and LPIPS when available) over `frames`; None without frames."""
    if not frames:
        return None
    ps, ss, lp = [], [], []
    with torch.no_grad():
        for i in frames:
            means = warp(i, model.means) if warp is not None else None
            out = render(model, views.w2c[i].to(device), views.K[i].to(device), views.width, views.height, mode,
                         cfg, model.sh_degree, means)
            gt = views.images[i].to(device)
            img = out.colour.clamp(0, 1)
            ps.append(psnr(img, gt))
            ss.append(float(ssim(img, gt)))
            if lpips_fn is not None:
                lp.append(float(lpips_fn(img.permute(2, 0, 1)[None] * 2 - 1, gt.permute(2, 0, 1)[None] * 2 - 1)))
    return EvalMetrics(float(np.mean(ps)), float(np.mean(ss)), len(frames), float(np.mean(lp)) if lp else None)


# --------------------------------------------------------------------------- training: setup / step / log


@dataclass
class TrainData:
    """What a run trains on, fixed once set up."""

    views: Views
    train_ids: list[int]
    test_ids: list[int]
    init_path: Path  # the point cloud the Gaussians started from
    scale: float  # scene scale: unit of the position LR, the densify sizes and the distortion depths
    warp: Warp | None
    device: torch.device


@dataclass
class TrainState:
    """Everything a step changes. A checkpoint holds the model, the optimizers and `step`."""

    model: GaussianModel
    optimizers: dict[str, torch.optim.Optimizer]
    densify: DensifyState
    step: int  # last completed step (0: none)
    order: list[int] = field(default_factory=list)  # training frames left in this epoch, taken from the end


@dataclass
class StepLog:
    """What one step reports for logging (detached)."""

    loss: Tensor
    l1: Tensor
    densify: dict[str, int]  # counts of cloned / split / pruned Gaussians when it refined


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        ("cpu" if name == "auto" else name))


def load_data(scene: SceneDir, cfg: TrainerConfig, warp: Warp | None) -> tuple[TrainData, np.ndarray, np.ndarray]:
    """Training views, frame split, scene scale and warp; plus the initial points xyz, rgb [N, 3]."""
    views = load_views(scene, cfg.data.long_side)
    train_ids, test_ids = split_frames(len(views.images), cfg.data.holdout_every)
    xyz, rgb, init_path = init_points(scene, cfg.data, cfg.seed)
    scale = scene_scale(views, xyz)
    if warp is None and cfg.data.use_deformation:
        warp = load_warp(scene.root)
    if warp is not None:
        train_ids, test_ids = _covered(warp, train_ids), _covered(warp, test_ids)
        if not train_ids:
            raise InputError(scene.align_dir, "the inverse deformations cover none of the training frames: rerun reconstruct.py")
    return TrainData(views, train_ids, test_ids, init_path, scale, warp, _device(cfg.device)), xyz, rgb


def _resume_or_reset(out: Path, model: GaussianModel, cfg: TrainerConfig, data: TrainData, mode: Mode,
                     resume: bool) -> tuple[dict[str, torch.optim.Optimizer], int]:
    """(optimizers, start step): from the newest checkpoint with `resume`, else fresh; a fresh run
    deletes the old checkpoints so they cannot outrank its own."""
    optimizers = _optimizers(model, cfg.optim, data.scale)
    start = 0
    ckpts = _checkpoints(out)
    if resume and ckpts:
        blob = torch.load(ckpts[-1], map_location=data.device, weights_only=False)
        model.replace({k: v.to(data.device) for k, v in blob["params"].items()})
        optimizers = _optimizers(model, cfg.optim, data.scale)
        for k, o in optimizers.items():
            o.load_state_dict(blob["optim"][k])
        start = int(blob["step"])
        info(f"[train_gs {mode}] resuming from {ckpts[-1].name} ({len(model)} Gaussians)")
    elif resume:
        warn(f"--resume: no checkpoint under {out / 'checkpoints'}; starting from scratch")
    if start == 0:
        for old in ckpts:
            old.unlink()
    return optimizers, start


def setup_training(scene: SceneDir, mode: Mode, cfg: TrainerConfig, resume: bool,
                   warp: Warp | None) -> tuple[TrainData, TrainState]:
    """Seed, load the data, build the Gaussians and their optimizers (or restore a checkpoint)."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data, xyz, rgb = load_data(scene, cfg, warp)
    model = GaussianModel.from_points(xyz, rgb, cfg.sh_degree, mode, cfg.data.init_opacity).to(data.device)
    optimizers, start = _resume_or_reset(scene.gs_dir(mode), model, cfg, data, mode, resume)
    return data, TrainState(model, optimizers, DensifyState.empty(len(model), data.device), start)


def train_step(state: TrainState, data: TrainData, step: int, mode: Mode, cfg: TrainerConfig,
               lpips_fn=None) -> StepLog:
    """Step `step` on the next training view: render, loss, backward, Adam, then densify / prune on
    schedule (`strategy.refine`). Updates `state` in place."""
    if not state.order:
        state.order = random.sample(data.train_ids, len(data.train_ids))
    i = state.order.pop()
    state.optimizers["means"].param_groups[0]["lr"] = means_lr(step, cfg, data.scale)
    views, device, model = data.views, data.device, state.model
    w2c, K, gt = views.w2c[i].to(device), views.K[i].to(device), views.images[i].to(device)
    means = data.warp(i, model.means) if data.warp is not None else None
    o = render(model, w2c, K, views.width, views.height, mode, cfg, active_sh_degree(step, cfg), means,
               distortion_on(step, mode, cfg.loss))
    o.retain_densify_grad()
    loss, l1 = image_loss(o, gt, K, step, mode, cfg.loss, data.scale, lpips_fn)
    loss.backward()
    state.densify.accumulate(o.densify_grad(), o.radii, views.width, views.height)
    for opt in state.optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    state.densify, stats = refine(cfg.densify, model, state.optimizers, state.densify, step, data.scale, mode)
    state.step = step
    return StepLog(loss.detach(), l1.detach(), stats)


def log_step(writer, step: int, log: StepLog, n_gaussians: int) -> None:
    """TensorBoard scalars of one step."""
    writer.add_scalar("train/loss", log.loss.item(), step)
    writer.add_scalar("train/l1", log.l1.item(), step)
    writer.add_scalar("train/gaussians", n_gaussians, step)
    for k, v in log.densify.items():
        writer.add_scalar(f"densify/{k}", v, step)


def log_eval(writer, step: int, metrics: TrainMetrics) -> None:
    """TensorBoard scalars of the final evaluation."""
    for split, m in (("train", metrics.train), ("heldout", metrics.heldout)):
        if m is not None:
            writer.add_scalar(f"eval/{split}_psnr", m.psnr, step)
            writer.add_scalar(f"eval/{split}_ssim", m.ssim, step)


def _lpips_on(device: torch.device):
    """The LPIPS module when its weights are cached (metric; loss only with lpips_weight > 0), else None."""
    lpips_fn = lpips_if_available()
    return lpips_fn.to(device) if lpips_fn is not None else None


def train_gaussians(scene: SceneDir, mode: Mode, cfg: TrainerConfig, resume: bool = False,
                    warp: Warp | None = None) -> TrainResult:
    """Train one renderer and write all its outputs under scene.gs_dir(mode)."""
    from torch.utils.tensorboard import SummaryWriter  # imported when training: it takes ~1 s

    t0 = time.perf_counter()
    data, state = setup_training(scene, mode, cfg, resume, warp)
    out = scene.gs_dir(mode)
    writer = SummaryWriter(str(out / "tb"), purge_step=state.step if state.step else None)
    lpips_fn = _lpips_on(data.device)
    meta = {"mode": mode, "scene_scale": data.scale, "init": str(data.init_path)}
    start = state.step
    for step in progress(range(start + 1, cfg.iterations + 1), desc=f"train_gs {mode}", total=cfg.iterations - start):
        log = train_step(state, data, step, mode, cfg, lpips_fn)
        if step % cfg.output.log_every == 0 or step == cfg.iterations:
            log_step(writer, step, log, len(state.model))
        if step % cfg.output.checkpoint_every == 0 and step < cfg.iterations:
            save_checkpoint(out, step, state.model, state.optimizers, meta, cfg.output.keep_checkpoints)
    outputs = [save_checkpoint(out, state.step, state.model, state.optimizers, meta, cfg.output.keep_checkpoints)]
    metrics = evaluate_run(scene, mode, cfg, data, state, lpips_fn)
    log_eval(writer, state.step, metrics)
    writer.close()
    outputs += write_outputs(scene, mode, cfg, data, state.model)
    metrics.seconds = round(time.perf_counter() - t0, 2)
    atomic_write_text(out / "metrics.json", json.dumps(metrics.to_json(), indent=1))
    outputs.append(out / "metrics.json")
    return TrainResult(out, state.step, len(state.model), metrics, time.perf_counter() - t0, outputs)


def evaluate_run(scene: SceneDir, mode: Mode, cfg: TrainerConfig, data: TrainData, state: TrainState,
                 lpips_fn) -> TrainMetrics:
    """Metrics of the finished model at full SH degree (sets model.sh_degree); `seconds` left 0.
    PSNR / SSIM per split, and LPIPS when its backbone is cached (`lpips_fn` not None)."""
    model = state.model
    model.sh_degree = cfg.sh_degree
    train = evaluate(model, data.views, data.train_ids, mode, cfg, data.warp, data.device, lpips_fn)
    heldout = evaluate(model, data.views, data.test_ids, mode, cfg, data.warp, data.device, lpips_fn)
    return TrainMetrics(
        renderer=mode, steps=state.step, gaussians=len(model), train=train, heldout=heldout,
        image_size=[data.views.width, data.views.height], init=str(data.init_path.relative_to(scene.root)),
        deformation=data.warp is not None, backend=cfg.backend,
        lpips="on" if lpips_fn is not None else "off (backbone weights not cached locally)")


def write_outputs(scene: SceneDir, mode: Mode, cfg: TrainerConfig, data: TrainData, model: GaussianModel) -> list[Path]:
    """splats.ply and (when asked) the renders along the trajectories."""
    ply = scene.gs_dir(mode) / "splats.ply"
    write_splats_ply(ply, {k: v.cpu() for k, v in model.raw().items()})
    if not cfg.output.render_trajectories:
        return [ply]
    return [ply, render_outputs(scene, model, data.views, mode, cfg, data.device)]


# --------------------------------------------------------------------------- renders


def _render_cameras(model, cams: list[tuple[Tensor, Tensor]], w: int, h: int, mode, cfg, device) -> list[np.ndarray]:
    frames = []
    with torch.no_grad():
        for w2c, K in cams:
            o = render(model, w2c.to(device), K.to(device), w, h, mode, cfg, model.sh_degree)
            frames.append((o.colour.clamp(0, 1) * 255).round().byte().cpu().numpy())
    return frames


def render_outputs(scene: SceneDir, model: GaussianModel, views: Views, mode: Mode, cfg: TrainerConfig,
                   device) -> Path:
    """renders/<trajectory>/NNNNNN.png for each trajectories/*.json (canonical, no warp) and
    renders/flythrough.mp4 through all of them (or through the training cameras when there are none)."""
    import imageio.v2 as imageio

    out = scene.gs_dir(mode) / "renders"
    all_frames: list[np.ndarray] = []
    with atomic_dir(out) as tmp:
        for tj in sorted((scene.root / "trajectories").glob("*.json")):
            traj = load_trajectory(tj)
            w, h = training_size(traj.width, traj.height, cfg.data.long_side)
            cams = [(torch.from_numpy(c.w2c).float(),
                     torch.from_numpy(scale_intrinsics(c.K, w / traj.width, h / traj.height)).float())
                    for c in traj.cameras]
            frames = _render_cameras(model, cams, w, h, mode, cfg, device)
            (tmp / tj.stem).mkdir()
            for k, f in enumerate(frames):
                imageio.imwrite(tmp / tj.stem / f"{k:06d}.png", f)
            if (w, h) == (views.width, views.height) or not all_frames:
                all_frames += frames
        if not all_frames:
            cams = [(views.w2c[i], views.K[i]) for i in range(len(views.images))]
            all_frames = _render_cameras(model, cams, views.width, views.height, mode, cfg, device)
        shape = all_frames[0].shape
        all_frames = [f for f in all_frames if f.shape == shape]
        write_video(tmp / "flythrough.mp4", all_frames, fps=cfg.output.video_fps)  # odd sizes cropped to even
    return out


# --------------------------------------------------------------------------- stage


def stage_name(mode: Mode) -> str:
    return f"train_gs_{mode}"


def stage_inputs(scene: SceneDir, cfg: TrainerConfig) -> tuple[list, dict[str, str]]:
    """(identity of outside files, consumed stage runs) of what training reads: results.npz, and
    align/ (canonical cloud, deformations) or cache.ply. Our stages' outputs are refused when stale."""
    stages = scene.load().stages if scene.exists() else {}
    files, runs = [], {}
    uses_align = cfg.data.use_canonical and scene.canonical_ply.exists()
    producers = [s for s in ("export", "import") if s in stages][:1]
    if uses_align and "reconstruct" in stages:
        producers.append("reconstruct")
    for s in producers:
        runs[s] = scene.require_current(s, scene.root).run
    if not runs.keys() & {"export", "import"}:
        files.append(file_digest(scene.results_npz))
    init = scene.canonical_ply if uses_align else scene.cache_ply
    if "reconstruct" not in runs and init.exists() and not ("export" in runs and init == scene.cache_ply):
        files.append(file_digest(init))
    return files, runs


def stage_hash(mode: Mode, cfg: TrainerConfig, files: list) -> str:
    """Config (minus output-only fields) + the content of outside input files (stage_inputs)."""
    d = asdict(cfg)
    d.pop("output")
    return config_hash(d, mode, files)


def run_stage(scene: SceneDir, mode: Mode, cfg: TrainerConfig, resume: bool = False, force: bool = False) -> TrainResult | None:
    """Train `mode` unless scene.json says it is done with this config; record the stage. None when skipped."""
    if not scene.results_npz.exists():
        raise InputError(scene.results_npz, "no results.npz: run run_pipeline.py (or reconstruct.py --input-video) first")
    files, inputs = stage_inputs(scene, cfg)  # once: it reads whole files to hash them
    chash = stage_hash(mode, cfg, files)
    if not force and not resume and scene.is_current(stage_name(mode), chash):
        return None
    if cfg.output.render_trajectories:  # the fly-through is written last, after all the training
        check_video_writer("--train.output.no-render-trajectories")
    with scene.lock():
        res = train_gaussians(scene, mode, cfg, resume=resume)
        m = res.metrics
        scene.record_stage(stage_name(mode), chash, res.outputs, res.seconds, inputs=inputs, gaussians=res.n_gaussians,
                           psnr_train=m.train.psnr if m.train else None,
                           psnr_heldout=m.heldout.psnr if m.heldout else None)
    return res
