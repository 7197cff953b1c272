"""A tiny synthetic scene for splat tests and benchmarks: textured walls, floor and a ball, seen from
cameras on an arc, rendered by our own rasterizer from dense ground-truth Gaussians.

    make_synthetic_scene("/tmp/syn", width=64, height=48, n_views=12)
    # → scene.json, exports/npz/results.npz (the views), cache.ply (sparser, noisy points)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from worldstereo.cameras import intrinsics_from_fov, look_at
from worldstereo.geometry import invert_rigid
from worldstereo.io.ply import write_ply
from worldstereo.io.results import FrameResults, save_results
from worldstereo.render.gaussians import rasterize
from worldstereo.scene import SceneDir


def _texture(p: np.ndarray) -> np.ndarray:
    """Colour [N, 3] in [0, 1] for points [N, 3]: checkerboard × smooth hue."""
    chk = ((np.floor(p[:, 0] * 4) + np.floor(p[:, 1] * 4) + np.floor(p[:, 2] * 4)) % 2)[:, None]
    hue = 0.5 + 0.4 * np.stack([np.sin(2 * p[:, 0] + 0.3), np.sin(2 * p[:, 1] + 2.1), np.sin(2 * p[:, 2] + 4.2)], 1)
    return np.clip(0.25 + 0.5 * hue * (0.6 + 0.4 * chk), 0, 1)


def synthetic_points(spacing: float = 0.04) -> np.ndarray:
    """Surface samples [N, 3]: a back wall (z = 3), a floor (y = 0.8) and a ball at (0, 0.3, 2.3)."""
    g = np.arange(-1.6, 1.6 + 1e-9, spacing)
    wall = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    wall = np.c_[wall, np.full(len(wall), 3.0)]
    zs = np.arange(1.0, 3.0, spacing)
    fl = np.stack(np.meshgrid(g, zs, indexing="ij"), -1).reshape(-1, 2)
    floor = np.c_[fl[:, 0], np.full(len(fl), 0.8), fl[:, 1]]
    n_ball = int(4 * math.pi * 0.45 ** 2 / spacing ** 2)
    k = np.arange(n_ball) + 0.5  # Fibonacci sphere
    phi, th = np.arccos(1 - 2 * k / n_ball), math.pi * (1 + 5 ** 0.5) * k
    ball = 0.45 * np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1) + [0, 0.3, 2.3]
    return np.concatenate([wall, floor, ball]).astype(np.float32)


def synthetic_cameras(n_views: int, width: int, height: int, arc_deg: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """w2c [n, 4, 4] on an arc around the ball, and K [3, 3] (60° field of view)."""
    target = np.array([0.0, 0.2, 2.4])
    w2c = []
    for a in np.radians(np.linspace(-arc_deg / 2, arc_deg / 2, n_views)):
        eye = target + 2.2 * np.array([math.sin(a), -0.25, -math.cos(a)])
        w2c.append(invert_rigid(look_at(eye, target)))
    return np.stack(w2c), intrinsics_from_fov(width, height, 60.0)


def make_synthetic_scene(root: str | Path, width: int = 64, height: int = 48, n_views: int = 12,
                         spacing: float = 0.04, seed: int = 0) -> SceneDir:
    """Write a complete synthetic scene (see module docstring) and return its SceneDir."""
    scene = SceneDir(root)
    scene.check_writable()
    rng = np.random.default_rng(seed)
    pts = synthetic_points(spacing)
    rgb = _texture(pts)
    w2c, K = synthetic_cameras(n_views, width, height)
    n = len(pts)
    means = torch.from_numpy(pts)
    scales = torch.full((n, 3), spacing * 0.7)
    quats = torch.tensor([1.0, 0, 0, 0]).repeat(n, 1)
    opac = torch.full((n,), 0.95)
    cols = torch.from_numpy(rgb).float()
    Kt = torch.from_numpy(K).float()
    images, depths = [], []
    with torch.no_grad():
        for v in w2c:
            o = rasterize(means, quats, scales, opac, cols, torch.from_numpy(v).float(), Kt, width, height,
                          background=torch.full((3,), 0.5), backend="torch")
            images.append((o.colour.clamp(0, 1) * 255).round().byte().numpy())
            depths.append((o.depth / o.alpha.clamp_min(1e-6))[..., 0].numpy())
    res = FrameResults(np.stack(depths).astype(np.float32), np.ones((n_views, height, width), np.float32),
                       w2c[:, :3].astype(np.float32), np.repeat(K[None], n_views, 0).astype(np.float32), np.stack(images))
    scene.results_npz.parent.mkdir(parents=True, exist_ok=True)
    save_results(scene.results_npz, res)
    keep = rng.random(n) < 0.5
    noisy = pts[keep] + rng.normal(0, spacing * 0.25, (int(keep.sum()), 3)).astype(np.float32)
    c8 = np.clip(rgb[keep] * 255 + rng.normal(0, 8, (int(keep.sum()), 3)), 0, 255).astype(np.uint8)
    write_ply(scene.cache_ply, {"x": noisy[:, 0], "y": noisy[:, 1], "z": noisy[:, 2], "red": c8[:, 0],
                                "green": c8[:, 1], "blue": c8[:, 2], "conf": np.ones(len(noisy), np.float32)})
    scene.update(input_kind="synthetic", working_size=(width, height))
    return scene
