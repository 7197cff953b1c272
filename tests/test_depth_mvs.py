"""Plane-sweep MVS on exact synthetic renders, and reconstruct.py --input-video with depth from MVS or
from a local depth model (a tiny random DPT built offline)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

import reconstruct
from worldstereo.bench.builders import make_scene
from worldstereo.bench.synthetic_scene import Rect, Texture
from worldstereo.cameras import Trajectory, save_trajectory, scale_intrinsics
from worldstereo.depth.mvs import MVSConfig, mvs_depth, mvs_sequence, neighbour_indices, plane_homographies
from worldstereo.geometry import invert_rigid, unproject_depth
from worldstereo.io.ply import read_ply
from worldstereo.io.results import load_results
from worldstereo.io.video import read_video, write_video

W, H = 160, 120
SMALL = ["--preprocess.points-per-frame", "2000", "--icp.max-iters", "8", "--no-tensorboard"]


def sweep_inputs(scene, cams, ref: int, count: int = 3):
    """Reference render (rgb, depth), the neighbours' images, K [N, 3, 3] and c2w [N, 4, 4]."""
    nb = neighbour_indices(ref, len(cams), count)
    rgb, depth = scene.render(cams[ref])
    srcs = [scene.render(cams[j])[0] for j in nb]
    return rgb, depth, srcs, np.stack([cams[j].K for j in nb]), np.stack([cams[j].c2w for j in nb])


@pytest.fixture(scope="module")
def room():
    scene = make_scene("room", 1)
    return scene, scene.path("left", 13, W, H)


def test_homography_maps_plane_points_like_projection(room):
    _, cams = room
    a, b = cams[6], cams[7]
    homs = plane_homographies(a.K, a.c2w, b.K, b.c2w, np.array([1.5, 4.0]))
    uv = np.array([[10.0, 20.0], [100.0, 70.0]])
    for Hm, d in zip(homs, (1.5, 4.0)):
        X = unproject_depth(np.full((H, W), d), a.K, a.c2w)[uv[:, 1].astype(int), uv[:, 0].astype(int)]
        cam = (invert_rigid(b.c2w)[:3, :3] @ X.T).T + invert_rigid(b.c2w)[:3, 3]
        expect = (cam[:, :2] / cam[:, 2:]) * np.diag(b.K)[:2] + b.K[:2, 2]
        x = np.c_[uv, np.ones(2)] @ Hm.T
        np.testing.assert_allclose(x[:, :2] / x[:, 2:], expect, atol=1e-6)


def test_mvs_accuracy_on_confident_pixels(room):
    scene, cams = room
    rgb, gt, srcs, K, c2w = sweep_inputs(scene, cams, 6)
    cfg = MVSConfig()
    depth, conf = mvs_depth(rgb, cams[6].K, cams[6].c2w, srcs, K, c2w, cfg)
    assert depth.shape == conf.shape == (H, W) and depth.dtype == np.float32
    has_gt = np.isfinite(gt)
    confident = (conf >= cfg.min_conf) & (depth > 0) & has_gt
    rel = np.abs(depth[confident] - gt[confident]) / gt[confident]
    assert np.median(rel) < 0.03, np.median(rel)
    assert confident.sum() >= 0.5 * has_gt.sum(), confident.mean()
    assert ((conf >= 0) & (conf <= 1)).all() and (conf[depth == 0] < 1).any()


@dataclass
class FlatPatch(Texture):
    """The wrapped texture, but one constant colour within `radius` of `centre`."""

    inner: Texture = None
    centre: np.ndarray = None
    radius: float = 0.0

    def colour(self, p: np.ndarray) -> np.ndarray:
        out = self.inner.colour(p)
        out[np.linalg.norm(p - self.centre, axis=1) < self.radius] = (0.5, 0.45, 0.4)
        return out


def test_textureless_surface_gets_low_confidence(room):
    scene, cams = room
    ref = cams[6]
    o, rd = scene.camera_rays(ref)
    t, prim = scene.raycast(o, rd)
    prim = prim.reshape(H, W)
    rects = [i for i, p in enumerate(scene.primitives) if isinstance(p, Rect)]
    k = max(rects, key=lambda i: (prim == i).sum())  # the floor: planar, so its shading is constant
    v, u = np.argwhere(prim == k)[np.argmin(np.abs(np.argwhere(prim == k) - [0.8 * H, W / 2]).sum(1))]
    X = o + t.reshape(H, W)[v, u] * rd.reshape(H, W, 3)[v, u]
    radius = 30 * t.reshape(H, W)[v, u] / ref.K[0, 0]  # about 30 px
    tex = scene.primitives[k].texture
    scene.primitives[k].texture = FlatPatch("noise", tex.colour_a, tex.colour_b, tex.scale, tex.seed, tex, X, radius)
    try:
        rgb, gt, srcs, K, c2w = sweep_inputs(scene, cams, 6)
    finally:
        scene.primitives[k].texture = tex
    cfg = MVSConfig()
    depth, conf = mvs_depth(rgb, ref.K, ref.c2w, srcs, K, c2w, cfg)
    pts = o + t[:, None] * rd
    patch = ((prim.ravel() == k) & (np.linalg.norm(pts - X, axis=1) < radius)).reshape(H, W)
    region = cv2.erode(patch.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # matching windows inside it
    assert region.sum() >= 50 and np.ptp(rgb[region].reshape(-1, 3), axis=0).max() == 0  # constant colour
    assert np.median(conf[region]) < 0.05 and (conf[region] < cfg.min_conf).mean() > 0.95
    assert (depth[region] == 0).mean() > 0.95
    textured = (prim == k) & ~patch & (gt > 0)
    assert np.median(conf[textured]) > cfg.min_conf  # the rest of the floor stays confident


def test_sequence_consistency_and_no_baseline(room):
    scene, cams = room
    idx = [4, 5, 6, 7]
    renders = [scene.render(cams[i]) for i in idx]
    images = np.stack([r[0] for r in renders])
    K, c2w = np.stack([cams[i].K for i in idx]), np.stack([cams[i].c2w for i in idx])
    depth, conf = mvs_sequence(images, K, c2w, MVSConfig(neighbours=2))
    gt = np.stack([r[1] for r in renders])
    ok = depth > 0
    assert ok.mean() > 0.4 and np.median(np.abs(depth[ok] - gt[ok]) / gt[ok]) < 0.03
    assert (conf[~ok] == 0).all()
    still = np.repeat(c2w[:1], 4, axis=0)  # no camera motion: no triangulated range, no depth
    d0, c0 = mvs_sequence(images, K, still, MVSConfig(neighbours=2))
    assert not d0.any() and not c0.any()


# --------------------------------------------------------------------------- reconstruct.py --input-video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 6-frame 128×96 video of the room along `left`, its trajectory JSON, and the exact depths."""
    base = tmp_path_factory.mktemp("mvs_video")
    scene = make_scene("room", 1)
    cams = scene.path("left", 13, 128, 96)[3:9]
    renders = [scene.render(c) for c in cams]
    write_video(base / "gen.mp4", [r[0] for r in renders], fps=8)
    save_trajectory(Trajectory(cams, "left"), base / "traj.json")
    return base, cams, np.stack([r[1] for r in renders])


def test_reconstruct_input_video_with_mvs(video, tmp_path):
    base, cams, gt = video
    scene = tmp_path / "imported"
    reconstruct.entrypoint(["--input-video", str(base / "gen.mp4"), "--preprocess.depth-source", "mvs",
                            "--cameras", str(base / "traj.json"), "--scene", str(scene), *SMALL])
    r = load_results(scene / "exports" / "npz" / "results.npz")
    assert r.depth.shape == gt.shape and len(r) == 6
    ok = r.depth > 0
    assert ok.mean() > 0.3 and (r.conf[~ok] == 0).all()
    assert np.median(np.abs(r.depth[ok] - gt[ok]) / gt[ok]) < 0.05  # through H.264
    np.testing.assert_allclose(r.K, np.stack([c.K for c in cams]), atol=1e-4)
    assert (scene / "align" / "canonical.ply").exists() and len(read_ply(scene / "align" / "canonical.ply")) > 500


@pytest.mark.parametrize("args, expect", [
    ([], "MVS needs known cameras: pass --cameras"),
    (["--cameras", "short.json"], "has 2 cameras; the video has 6 frames"),
])
def test_mvs_input_errors_are_one_line(video, tmp_path, capsys, args, expect):
    base, cams, _ = video
    save_trajectory(Trajectory(cams[:2]), base / "short.json")
    args = [str(base / a) if a.endswith(".json") else a for a in args]
    with pytest.raises(SystemExit) as e:
        reconstruct.entrypoint(["--input-video", str(base / "gen.mp4"), "--preprocess.depth-source", "mvs",
                                *args, "--scene", str(tmp_path / "s"), *SMALL])
    assert e.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0] and "Traceback" not in err, err


def _build_tiny_dpt():
    """tests/test_depth_model.py's builder, loaded by path (the tests folder is not a package)."""
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("_depth_model_tests", Path(__file__).with_name("test_depth_model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_tiny_dpt


def test_reconstruct_input_video_with_depth_model(video, tmp_path):
    base, cams, _ = video
    build = _build_tiny_dpt()
    build(tmp_path / "dpt", read_video(base / "gen.mp4")[0])
    # the trajectory was made for 256×192 frames: K must be rescaled to the video's 128×96
    big = Trajectory([c.scaled(2.0) for c in cams], "left")
    save_trajectory(big, tmp_path / "traj_big.json")
    scene = tmp_path / "imported"
    reconstruct.entrypoint(["--input-video", str(base / "gen.mp4"), "--preprocess.depth-source", "model",
                            "--preprocess.depth-model-dir", str(tmp_path / "dpt"), "--cameras",
                            str(tmp_path / "traj_big.json"), "--scene", str(scene), *SMALL])
    r = load_results(scene / "exports" / "npz" / "results.npz")
    assert r.depth.shape == (6, 96, 128) and np.isfinite(r.depth).all() and (r.depth > 0).all()
    assert r.depth.std() > 1e-3 and (r.conf == 1).all()
    np.testing.assert_allclose(r.K, np.stack([scale_intrinsics(c.K, 0.5, 0.5) for c in big.cameras]), atol=1e-4)
    np.testing.assert_allclose(r.K, np.stack([c.K for c in cams]), atol=1e-4)
    np.testing.assert_allclose(r.extrinsics_w2c, np.stack([c.w2c[:3] for c in cams]), atol=1e-5)
    assert (scene / "align" / "canonical.ply").exists()
