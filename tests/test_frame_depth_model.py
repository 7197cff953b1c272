"""Depth of pixel-only frames from a local depth model (--frame-depth-source model): the per-frame
affine fit against the cache render (depth/anchor.py), its use in update_cache, and its bad input."""

from __future__ import annotations

import dataclasses
import shutil

import cv2
import numpy as np
import pytest
from conftest import plan_box_scene

from worldstereo.cameras import load_trajectory
from worldstereo.depth.anchor import anchor_depth, robust_affine
from worldstereo.errors import InputError
from worldstereo.io.video import write_video
from worldstereo.memory.cache import PointCache
from worldstereo.pipeline.config import FrameDepthConfig, GenerationConfig, validate
from worldstereo.scene import SceneDir


def _depth_field(h=48, w=64) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return (2.0 + 0.03 * u + 0.02 * v).astype(np.float64)


@pytest.mark.parametrize("output,forward", [
    ("disparity", lambda d: 3.0 / d + 0.7),
    ("depth", lambda d: 0.5 * d + 1.0),
    ("metric", lambda d: 2.0 * d),
])
def test_anchor_recovers_metric_depth_despite_outliers(output, forward):
    depth = _depth_field()
    pred = forward(depth)
    ref = depth.copy()
    rng = np.random.default_rng(0)
    bad = rng.random(ref.shape) < 0.2  # a fifth of the reference is wrong (other surfaces in the render)
    ref[bad] *= rng.uniform(0.3, 3.0, int(bad.sum()))
    got, fit = anchor_depth(pred.astype(np.float32), output, ref, np.ones(ref.shape, bool))
    assert fit is not None and fit.pixels == ref.size
    assert 0.75 < fit.inlier_ratio < 0.85  # the outliers are found, not fitted
    assert np.abs(got / depth - 1).max() < 1e-4  # every pixel, outliers of the reference included


def test_anchor_refuses_without_enough_overlap_or_with_a_reversed_fit():
    depth = _depth_field()
    valid = np.zeros(depth.shape, bool)
    valid[:5, :5] = True
    got, fit = anchor_depth((1 / depth).astype(np.float32), "disparity", depth, valid, min_px=200)
    assert fit is None and not got.any()
    # a "disparity" growing with depth cannot be a disparity of this scene
    got, fit = anchor_depth(depth.astype(np.float32), "disparity", depth, np.ones(depth.shape, bool))
    assert fit is None and not got.any()


def test_robust_affine_is_exact_on_clean_data():
    x = np.linspace(0.1, 2.0, 50)
    a, b, keep = robust_affine(x, 4.0 * x - 0.5)
    assert abs(a - 4.0) < 1e-9 and abs(b + 0.5) < 1e-9 and keep.all()


@pytest.fixture(scope="module")
def planned_box(tmp_path_factory):
    """A 96×72 textured box scene planned with one 21-frame `up` trajectory."""
    tmp = tmp_path_factory.mktemp("fdm")
    cfg = plan_box_scene(tmp)
    scene = SceneDir(tmp / "scene")
    traj = load_trajectory(scene.trajectory("up"))
    cache = PointCache.load(scene.cache_step(0))
    renders = [cache.render(c, 2.0) for c in traj.cameras]  # what a perfect generator would show
    frames = np.stack([r.rgb for r in renders])
    write_video(tmp / "up.mp4", frames, 12)
    return tmp, cfg, np.stack([np.where(r.hole, 0, r.depth) for r in renders])


def _with_model(cfg: GenerationConfig, model_dir) -> GenerationConfig:
    fd = FrameDepthConfig(frame_depth_source="model", frame_depth_model=model_dir)
    return dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, frame_depth=fd))


def _import_and_update(tmp, cfg, name):
    from worldstereo.pipeline.stages import stage_import_video, stage_update_cache

    shutil.copytree(tmp / "scene", tmp / name)
    scene = SceneDir(tmp / name)
    stage_import_video(scene, cfg, "up", tmp / "up.mp4")
    stage_update_cache(scene, cfg, "up")
    return scene, scene.load().stages["update_cache/up"].info["alignment"]


def test_a_disparity_model_right_up_to_scale_and_shift_is_made_metric_and_merged(planned_box, monkeypatch):
    """A stand-in model that returns 5/depth + 0.2 of the true surface, frame after frame: update_cache
    must fit each frame to the cache render and end with the true metric depth, scale 1."""
    from worldstereo.depth import model as model_mod

    tmp, cfg, true_depth = planned_box
    calls = iter(range(len(true_depth)))

    def fake_init(self, model_dir):
        self.model_dir = model_dir

    def fake_raw(self, rgb):
        d = true_depth[next(calls)]
        return np.where(d > 0, 5.0 / np.maximum(d, 1e-6) + 0.2, 0.2)  # 0.2 = infinitely far

    monkeypatch.setattr(model_mod.DepthModel, "__init__", fake_init)
    monkeypatch.setattr(model_mod.DepthModel, "raw", fake_raw)
    scene, a = _import_and_update(tmp, _with_model(cfg, tmp), "fake_model")
    assert a["depth_source"] == "model" and a["depth_model"] == str(tmp)
    fits = [f for f in a["anchor_fits"] if f is not None]
    assert len(fits) == 21 and all(abs(f["a"] - 5.0) < 0.05 and abs(f["b"] - 0.2) < 0.01 for f in fits)
    depth = np.load(scene.frame_depth("up") / "depth.npy")
    seen = (true_depth > 0) & (depth > 0)
    assert seen.sum() > 0.9 * (true_depth > 0).sum()
    assert np.median(np.abs(depth[seen] / true_depth[seen] - 1)) < 1e-3
    assert a["rejected_frames"] == [] and all(abs(f["scale"] - 1) < 0.01 for f in a["frames"])


def test_a_real_tiny_model_runs_offline_and_is_recorded(planned_box, tmp_path):
    pytest.importorskip("transformers")
    from test_depth_model import build_tiny_dpt

    tmp, cfg, _ = planned_box
    build_tiny_dpt(tmp_path / "dpt", cv2.imread(str(tmp / "p.png"))[..., ::-1].copy())
    scene, a = _import_and_update(tmp, _with_model(cfg, tmp_path / "dpt"), "tiny_model")
    assert a["depth_source"] == "model" and len(a["anchor_fits"]) == 21
    assert np.load(scene.frame_depth("up") / "depth.npy").shape == (21, 72, 96)
    # random weights: whatever it says, a frame is merged only when it aligns, and the cache never shrinks
    assert a["points_after"] >= a["points_before"]
    assert set(a["rejected_frames"]) <= set(range(21))


def test_model_source_without_a_folder_is_a_one_line_error(tmp_path):
    cfg = _with_model(GenerationConfig(), None)
    with pytest.raises(InputError) as e:
        validate(cfg)
    assert str(e.value).startswith("--frame-depth-source model needs --frame-depth-model DIR")
    with pytest.raises(InputError) as e:
        validate(_with_model(GenerationConfig(), tmp_path / "nope"))
    assert "nope" in str(e.value) and "depth model folder not found" in str(e.value)
    stereo = dataclasses.replace(GenerationConfig().generator,
                                 frame_depth=FrameDepthConfig(frame_depth_model=tmp_path))
    with pytest.raises(InputError) as e:
        validate(dataclasses.replace(GenerationConfig(), generator=stereo))
    assert "--frame-depth-model is used with --frame-depth-source model" in str(e.value)
