"""The neural method's Gaussian fit (worldstereo.reconstruction.neural) on the analytic box room."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from box_room import box_distance, cameras, render, write_inputs  # noqa: E402

from worldstereo.cameras import Camera
from worldstereo.reconstruction import ReconstructionConfig, reconstruct_scene
from worldstereo.reconstruction import fusion
from worldstereo.reconstruction.neural import (FitConfig, crop_size, fit_gaussians, normal_to_quat, rendered_depths,
                                               seed_model)
from worldstereo.reconstruction.types import Frames, PointCloud
from worldstereo.render.gaussians import quat_to_rotmat


def _exact(n: int = 4) -> tuple[Frames, np.ndarray]:
    K, poses = cameras(n, 64, 48, 46.7)
    imgs, depths = zip(*(render(K, c, 64, 48) for c in poses))
    return Frames(np.stack(imgs), [Camera(K, c, 64, 48) for c in poses]), np.stack(depths).astype(np.float32)


def test_normal_to_quat_turns_z_onto_the_normal():
    import torch

    rng = np.random.default_rng(0)
    n = rng.normal(size=(50, 3))
    n = np.concatenate([n / np.linalg.norm(n, axis=1, keepdims=True), [[0, 0, -1.0], [0, 0, 1.0]]])
    R = quat_to_rotmat(torch.from_numpy(normal_to_quat(n))).numpy()
    np.testing.assert_allclose(R[:, :, 2], n, atol=1e-6)


def test_crop_size_has_the_batch_pixels_and_the_frame_aspect():
    w, h = crop_size(400, 300, 8192)
    assert abs(w * h - 8192) < 0.02 * 8192 and abs(w / h - 4 / 3) < 0.05
    assert crop_size(96, 72, 8192) == (96, 72)  # smaller frame: whole frame


def test_fit_pulls_a_displaced_seed_onto_the_walls():
    """Seed discs 4 cm off the walls (along the normal, toward the cameras); 80 steps of the fit
    bring the rendered depth back: median error falls by more than half."""
    frames, depth = _exact()
    cloud = fusion.downsample_cloud(fusion.depth_cloud(frames, depth), 0.06)
    moved = PointCloud(cloud.points + 0.04 * cloud.normals, cloud.colors, cloud.normals)
    before = rendered_depths(seed_model(moved, 60_000), frames)
    fit = fit_gaussians(frames, depth, moved, FitConfig(iterations=80, batch_pixels=1500, plateau_window=1000))
    after = rendered_depths(fit.model, frames)
    assert fit.steps == 80 and fit.stopped == "iterations" and fit.pixels_per_step == np.prod(crop_size(64, 48, 1500))
    assert fit.loss_last < fit.loss_first
    err = lambda d: np.median(np.abs(d - depth)[(d > 0)])  # noqa: E731
    assert (before > 0).mean() > 0.9 and (after > 0).mean() > 0.9
    assert err(after) < 0.5 * err(before), (err(before), err(after))


def test_fit_stops_on_a_plateau():
    frames, depth = _exact(2)
    cloud = fusion.downsample_cloud(fusion.depth_cloud(frames, depth), 0.08)
    fit = fit_gaussians(frames, depth, cloud, FitConfig(iterations=2000, batch_pixels=800, plateau_window=20,
                                                        plateau_rel=0.5))
    assert fit.stopped == "converged" and fit.steps == 40  # first check: 2 windows, improvement < 50 %


def test_neural_iterations_must_not_be_negative():
    from worldstereo.errors import InputError

    with pytest.raises(InputError, match="neural_iterations must be ≥ 0"):
        ReconstructionConfig(neural_iterations=-1)


@pytest.mark.slow
def test_neural_with_fit_on_the_room_video(tmp_path):
    """neural = alignment + Gaussian fit + TSDF of the rendered depth: mesh within 2 cm of the true
    walls (6 frames of 96 × 72 through H.264); the fit ran with the config's cap and batch."""
    write_inputs(tmp_path, n=6)
    cfg = ReconstructionConfig(method="neural", resolution=96, texture_resolution=0, neural_iterations=100,
                               neural_batch_size=4000)
    s = reconstruct_scene(tmp_path / "video.mp4", tmp_path / "trajectory.json", config=cfg)
    fit = s.metadata["gaussian_fit"]
    assert fit["steps"] <= 100 and fit["pixels_per_step"] == np.prod(crop_size(96, 72, 4000))
    assert len(s.mesh.faces) > 200
    assert box_distance(s.mesh.vertices).mean() < 0.02


def test_hybrid_checks_the_rendered_depth_with_mvs():
    from worldstereo.reconstruction.methods import checked_depth

    mvs = np.array([[[2.0, 2.0, 0.0, 3.0]]], np.float32)
    model = np.array([[[2.02, 2.5, 4.0, 0.0]]], np.float32)
    out, rep = checked_depth(model, mvs, 0.02)
    np.testing.assert_allclose(out, [[[2.02, 2.0, 4.0, 3.0]]])  # agree → model; disagree → MVS; MVS hole → model
    assert rep == {"agree_with_mvs": pytest.approx(1 / 3), "mvs_kept": pytest.approx(2 / 3), "filled_by_model_px": 1}
