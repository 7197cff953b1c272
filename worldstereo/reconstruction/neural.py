"""The `neural` method's Gaussian fit: 2D Gaussian discs seeded from the aligned cloud, fitted to the
frames (colour + depth) for `neural_iterations` steps of `neural_batch_size` pixels, then rendered
back to depth maps for TSDF fusion (the 2DGS way of extracting a mesh).

    fit = fit_gaussians(frames, depth, cloud, FitConfig(iterations=300, batch_pixels=8192))
    depth_fit = rendered_depths(fit.model, frames)   # [N, H, W], 0 where the model is transparent

Uses the project's rasterizer (`worldstereo.render.gaussians`: our torch one on CPU, gsplat on CUDA)
and its `GaussianModel`; no densification (the seed cloud is already dense), so a step costs one
rasterisation of `batch_pixels` pixels.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worldstereo.reconstruction.types import Frames, PointCloud
from worldstereo.render.gaussians import rasterize
from worldstereo.splat.model import GaussianModel


@dataclass
class FitConfig:
    """Steps, batch and loss weights of the Gaussian fit."""

    iterations: int = 300
    """Cap on optimisation steps (each renders one crop of one frame)."""
    batch_pixels: int = 8192
    """Pixels per step: a random crop of one frame with about this many pixels (the whole frame
    when it is smaller)."""
    depth_weight: float = 1.0
    """Weight of the relative depth term |Σw·z − α·d| / d against the frame's depth d."""
    alpha_weight: float = 0.1
    """Weight of (1 − α) where the frame has depth (the surface must be opaque there)."""
    plateau_window: int = 50
    """Stop early when the mean loss of the last window improved by less than `plateau_rel` on the
    window before it (checked every window)."""
    plateau_rel: float = 0.005
    max_gaussians: int = 60_000
    """Seed points at most (the cloud is voxel-downsampled until it fits)."""
    seed: int = 0


@dataclass
class FitResult:
    """The fitted model and what the fit did."""

    model: GaussianModel
    steps: int
    stopped: str  # "converged" (loss plateau) or "iterations" (the cap)
    loss_first: float  # mean loss of the first window (a quarter of the steps when fewer than 4 windows)
    loss_last: float  # mean loss of the last window
    pixels_per_step: int
    seconds: float

    def summary(self) -> dict:
        return {"gaussians": len(self.model), "steps": self.steps, "stopped": self.stopped,
                "loss_first": self.loss_first, "loss_last": self.loss_last,
                "pixels_per_step": self.pixels_per_step, "seconds": self.seconds}


def normal_to_quat(n: np.ndarray) -> np.ndarray:
    """Quaternions [N, 4] (w, x, y, z) rotating +z onto the unit normals n [N, 3] (a disc's normal is
    its local z axis): q = (1 + z·n, z × n) normalised; n = −z maps to a half turn about x."""
    z = np.array([0.0, 0.0, 1.0])
    w = 1.0 + n @ z
    xyz = np.cross(z, n)
    q = np.concatenate([w[:, None], xyz], 1)
    flip = w < 1e-6
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def seed_cloud(cloud: PointCloud, max_points: int) -> PointCloud:
    """The cloud voxel-downsampled (doubling the voxel) until it has at most max_points points."""
    from worldstereo.reconstruction.fusion import downsample_cloud

    if len(cloud) <= max_points:
        return cloud
    extent = float(np.ptp(np.percentile(cloud.points, [1, 99], axis=0), axis=0).max())
    voxel = extent / math.sqrt(max_points)  # a surface of that extent has ~max_points voxels of that side
    out = downsample_cloud(cloud, voxel)
    while len(out) > max_points:
        voxel *= 1.4
        out = downsample_cloud(cloud, voxel)
    return out


def seed_model(cloud: PointCloud, max_points: int) -> GaussianModel:
    """2DGS discs at the cloud's points, facing along their normals, opacity 0.5, SH degree 0."""
    seed = seed_cloud(cloud, max_points)
    model = GaussianModel.from_points(seed.points.astype(np.float32), seed.colors.astype(np.float32) / 255.0,
                                      0, "2dgs", init_opacity=0.5)
    quats = torch.from_numpy(normal_to_quat(seed.normals.astype(np.float64))).float()
    model.replace({**model.raw(), "quats": quats})
    return model


def crop_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """(w, h) of a crop with the frame's aspect and about `pixels` pixels, within the frame."""
    h = max(1, min(height, round(math.sqrt(pixels * height / width))))
    w = max(1, min(width, round(pixels / h)))
    return w, h


class _Targets:
    """The frames as tensors: images [N, H, W, 3] in 0..1, depth [N, H, W, 1], w2c [N, 4, 4], K [N, 3, 3]."""

    def __init__(self, frames: Frames, depth: np.ndarray, device: torch.device):
        self.images = torch.from_numpy(frames.images).float().div(255).to(device)
        self.depth = torch.from_numpy(depth.astype(np.float32))[..., None].to(device)
        self.w2c = torch.from_numpy(np.stack([c.w2c for c in frames.cameras])).float().to(device)
        self.K = torch.from_numpy(frames.K).float().to(device)


def step_loss(model: GaussianModel, t: _Targets, i: int, x0: int, y0: int, w: int, h: int,
              cfg: FitConfig) -> Tensor:
    """L1 colour + depth_weight · mean |Σw·z − α·d| / d + alpha_weight · mean (1 − α), the last two
    over the crop's pixels with depth d > 0. The crop is rendered by shifting the principal point."""
    K = t.K[i].clone()
    K[0, 2] -= x0
    K[1, 2] -= y0
    o = rasterize(model.means, model.quats, model.scales, model.opacities, model.sh, t.w2c[i], K, w, h,
                  mode="2dgs", sh_degree=0)
    gt = t.images[i, y0:y0 + h, x0:x0 + w]
    d = t.depth[i, y0:y0 + h, x0:x0 + w]
    has = d > 0
    loss = (o.colour - gt).abs().mean()
    if has.any():
        rel = (o.depth - o.alpha * d).abs() / d.clamp_min(1e-6)
        loss = loss + cfg.depth_weight * rel[has].mean() + cfg.alpha_weight * (1 - o.alpha[has]).mean()
    return loss


def optimizers(model: GaussianModel, scale: float) -> list[torch.optim.Optimizer]:
    """Adam per parameter group; positions move at 1e-3 × the scene's median depth per step."""
    lrs = {"means": 1e-3 * scale, "log_scales": 5e-3, "quats": 1e-3, "opacity_logits": 5e-2, "sh0": 2.5e-3,
           "shN": 1e-4}
    return [torch.optim.Adam([model.params[k]], lr=lr, eps=1e-15) for k, lr in lrs.items()]


def fit_gaussians(frames: Frames, depth: np.ndarray, cloud: PointCloud, cfg: FitConfig) -> FitResult:
    """Fit 2DGS discs seeded at `cloud` to the frames' colours and depth [N, H, W] (0 = none) for at
    most cfg.iterations steps of one random crop of cfg.batch_pixels pixels; stops on a loss plateau."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = seed_model(cloud, cfg.max_gaussians).to(device)
    t = _Targets(frames, depth, device)
    N, H, W = depth.shape
    w, h = crop_size(W, H, cfg.batch_pixels)
    opts = optimizers(model, float(np.median(depth[depth > 0])) if (depth > 0).any() else 1.0)
    losses: list[float] = []
    stopped, win = "iterations", cfg.plateau_window
    for step in range(1, cfg.iterations + 1):
        i = int(rng.integers(N))
        x0, y0 = int(rng.integers(W - w + 1)), int(rng.integers(H - h + 1))
        loss = step_loss(model, t, i, x0, y0, w, h, cfg)
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % win == 0 and step >= 2 * win:
            last, before = np.mean(losses[-win:]), np.mean(losses[-2 * win:-win])
            if before - last < cfg.plateau_rel * before:
                stopped = "converged"
                break
    k = max(1, min(win, len(losses) // 4))  # the figures' window: a quarter of a short run
    first = float(np.mean(losses[:k])) if losses else float("nan")
    last = float(np.mean(losses[-k:])) if losses else float("nan")
    return FitResult(model, len(losses), stopped, first, last, w * h, time.perf_counter() - t0)


def rendered_depths(model: GaussianModel, frames: Frames, min_alpha: float = 0.5) -> np.ndarray:
    """Expected depth Σw·z / α [N, H, W] of the model from each frame's camera; 0 where α < min_alpha."""
    N, H, W = frames.images.shape[:3]
    out = np.zeros((N, H, W), np.float32)
    dev = model.means.device
    with torch.no_grad():
        for i, cam in enumerate(frames.cameras):
            o = rasterize(model.means, model.quats, model.scales, model.opacities, model.sh,
                          torch.from_numpy(cam.w2c).float().to(dev), torch.from_numpy(cam.K).float().to(dev),
                          W, H, mode="2dgs", sh_degree=0)
            a = o.alpha[..., 0].cpu().numpy()
            d = o.depth[..., 0].cpu().numpy() / np.maximum(a, 1e-6)
            out[i] = np.where(a >= min_alpha, d, 0.0)
    return out
