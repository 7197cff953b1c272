"""Synthetic data on disk: benchmark scenes with ground truth (+ manifest entries), results.npz-only
folders of the inconsistency benchmark, and complete scene folders for splat training.

    entry = write_scene("room", 0, Path("bench/synth"))     # python -m utils.make_synthetic does this per scene
    write_results_folder("/tmp/v2w", make_inconsistent(SyntheticConfig(frames=10)))
    make_synthetic_scene("/tmp/syn", width=64, height=48, n_views=12)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldstereo.bench.builders import (SyntheticData, frames_to_results, make_scene, noisy_cache, render_splat_views,
                                        splat_scene_cameras, splat_scene_colours, splat_scene_points)
from worldstereo.bench.synthetic_scene import SyntheticScene
from worldstereo.cameras import Camera, Trajectory, save_trajectory
from worldstereo.io.atomic import atomic_path, atomic_write_text
from worldstereo.io.images import write_image
from worldstereo.io.ply import write_ply
from worldstereo.io.results import save_results
from worldstereo.scene import SceneDir


@dataclass
class ExportConfig:
    """What `write_scene` renders for one synthetic benchmark scene."""

    width: int = 256
    """Image width of the input view and path frames (pixels)."""
    height: int = 192
    """Image height (pixels)."""
    paths: tuple[str, ...] = ("orbit", "left")
    """Camera paths rendered as ground-truth frame sets (orbit, up, left, right, forward, sweep)."""
    frames: int = 21
    """Frames per path (frame 0 = the input view)."""
    gt_points: int = 200_000
    """Ground-truth surface samples, restricted to surface seen from the input view or a path."""
    depth_noise: float = 0.05
    """Per-frame depth distortion of the `recon/` frame sets (relative; 0 = exact): a random global
    scale and a smooth multiplicative warp per frame, the kind of inconsistency generated video has."""


def scene_name(kind: str, seed: int) -> str:
    return f"{kind}_{seed:03d}"


def write_scene(kind: str, seed: int, out: Path, cfg: ExportConfig = ExportConfig()) -> dict[str, Any]:
    """Render one scene into `out/<kind>_<seed>/` and return its manifest entry as JSON-ready dict
    (paths relative to `out`; `worldstereo.bench.manifest` reads it back as a ManifestEntry).

    Layout:
        input/image.png, input/depth.npy (float32 z-depth, metres, 0 = nothing hit), input/K.json
        gt/points.ply                    GT surface samples (x, y, z float32, red, green, blue uint8)
        gt/trajectories/<path>.json      the path cameras (worldstereo trajectory JSON)
        gt/frames/<path>.npz             exact frames in the results.npz schema (0 = nothing hit)
        recon/<path>/exports/npz/results.npz   the same frames with per-frame depth distortion
                                         (input for reconstruct.py --scene recon/<path>)
    """
    out = Path(out)
    name = scene_name(kind, seed)
    root = out / name
    scene = make_scene(kind, seed)
    cam = scene.default_camera(cfg.width, cfg.height)
    depth = _write_input_view(scene, cam, root / "input")
    all_cams = [cam]
    rng = np.random.default_rng([seed, 7])
    for p in cfg.paths:
        all_cams += _write_path(scene, p, root, cfg, rng)[1::2]
    xyz, col = scene.sample_points(cfg.gt_points, seed=seed, cameras=all_cams)
    write_ply(root / "gt" / "points.ply", {"x": xyz[:, 0].astype(np.float32), "y": xyz[:, 1].astype(np.float32),
                                          "z": xyz[:, 2].astype(np.float32), "red": col[:, 0], "green": col[:, 1],
                                          "blue": col[:, 2]})
    K = cam.K
    fin = depth[np.isfinite(depth)]
    return {
        "name": name, "kind": kind, "seed": seed, "synthetic": True,
        "image": f"{name}/input/image.png", "depth": f"{name}/input/depth.npy",
        "intrinsics": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])],
        "width": cfg.width, "height": cfg.height, "gt_points": f"{name}/gt/points.ply",
        "trajectories": {p: f"{name}/gt/trajectories/{p}.json" for p in cfg.paths},
        "frames": {p: f"{name}/gt/frames/{p}.npz" for p in cfg.paths},
        "recon": {p: f"{name}/recon/{p}" for p in cfg.paths},
        "median_depth": float(np.median(fin)) if len(fin) else None,
    }


def _write_input_view(scene: SyntheticScene, cam: Camera, folder: Path) -> np.ndarray:
    """image.png, depth.npy and K.json of the input view into `folder`; returns its depth [H, W]."""
    rgb, depth = scene.render(cam)
    write_image(folder / "image.png", rgb)
    with atomic_path(folder / "depth.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.where(np.isfinite(depth), depth, 0.0).astype(np.float32))  # 0 = unknown, as inputs require
    atomic_write_text(folder / "K.json", json.dumps({"K": cam.K.tolist(), "width": cam.width, "height": cam.height}))
    return depth


def _write_path(scene: SyntheticScene, path: str, root: Path, cfg: ExportConfig,
                rng: np.random.Generator) -> list[Camera]:
    """One path's trajectory, exact frames and distorted frames under `root`; returns its cameras."""
    cams = scene.path(path, cfg.frames, cfg.width, cfg.height)
    save_trajectory(Trajectory(cams, path), root / "gt" / "trajectories" / f"{path}.json")
    renders = [scene.render(c) for c in cams]
    save_results(root / "gt" / "frames" / f"{path}.npz", frames_to_results(renders, cams, 0.0, rng))
    save_results(root / "recon" / path / "exports" / "npz" / "results.npz",
                 frames_to_results(renders, cams, cfg.depth_noise, rng))
    return cams


def write_results_folder(root: str | Path, data: SyntheticData) -> None:
    """A video_to_world-style folder: only exports/npz/results.npz (no scene.json)."""
    save_results(Path(root) / "exports" / "npz" / "results.npz", data.results)


def make_synthetic_scene(root: str | Path, width: int = 64, height: int = 48, n_views: int = 12,
                         spacing: float = 0.04, seed: int = 0) -> SceneDir:
    """Write a complete splat test scene and return its SceneDir: scene.json, exports/npz/results.npz
    (views of dense ground-truth Gaussians on an arc, see builders.render_splat_views) and cache.ply
    (a sparser, noisy half of the surface, the initialisation)."""
    scene = SceneDir(root)
    scene.check_writable()
    rng = np.random.default_rng(seed)
    pts = splat_scene_points(spacing)
    rgb = splat_scene_colours(pts)
    w2c, K = splat_scene_cameras(n_views, width, height)
    res = render_splat_views(pts, rgb, w2c, K, width, height, spacing)
    scene.results_npz.parent.mkdir(parents=True, exist_ok=True)
    save_results(scene.results_npz, res)
    xyz, c8 = noisy_cache(pts, rgb, spacing, rng)
    write_ply(scene.cache_ply, {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "red": c8[:, 0],
                                "green": c8[:, 1], "blue": c8[:, 2], "conf": np.ones(len(xyz), np.float32)})
    scene.update(input_kind="synthetic", working_size=(width, height))
    return scene
