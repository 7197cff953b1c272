"""End to end on a tiny scene: outputs, schema, consistency, resumability."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.spatial import cKDTree

from configs.pipeline import GenerationConfig, InputConfig, PlanConfig
from worldstereo.cameras import PlannerConfig, load_trajectory
from worldstereo.io.results import RESULTS_KEYS, load_results
from worldstereo.memory.cache import PointCache
from worldstereo.pipeline.driver import open_scene, run_pipeline

from conftest import REPO, sigint_as_in_a_terminal


def _cfg(img, dep, frames=6):
    from conftest import textured_box_scene

    _, _, K = textured_box_scene()
    return GenerationConfig(
        input=InputConfig(image=img, depth=dep, intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]), long_side=96),
        plan=PlanConfig(planner=PlannerConfig(frames=frames)),
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from conftest import textured_box_scene
    import cv2

    tmp = tmp_path_factory.mktemp("pipe")
    rgb, depth, K = textured_box_scene()
    cv2.imwrite(str(tmp / "photo.png"), rgb[..., ::-1])
    np.save(tmp / "d.npy", depth)
    cfg = _cfg(tmp / "photo.png", tmp / "d.npy")
    scene = open_scene(tmp / "scene", create=True)
    t0 = time.perf_counter()
    run_pipeline(scene, cfg)
    return scene, cfg, time.perf_counter() - t0


def test_all_outputs_exist_with_exact_schema(finished):
    scene, cfg, seconds = finished
    assert seconds < 60
    root = scene.root
    for name in ("orbit", "up", "right", "left"):
        assert (root / "trajectories" / f"{name}.json").exists()
        assert (root / "videos" / f"{name}.mp4").stat().st_size > 0
        assert (root / "videos" / f"{name}_sheet.png").exists()
        for f in ("render.mp4", "mask.mp4", "refs.json"):
            assert (root / "conditions" / name / f).exists()
        assert (root / "frames" / name / "000000.png").exists()
    assert (root / "cache.ply").exists() and (root / "memory_bank" / "index.json").exists()
    with np.load(root / "exports" / "npz" / "results.npz") as z:
        assert sorted(z.files) == sorted(RESULTS_KEYS)
        n, h, w = z["depth"].shape
        assert n == 1 + 4 * 6 and (h, w) == (72, 96)
        assert z["conf"].shape == (n, h, w) and z["extrinsics"].shape == (n, 3, 4)
        assert z["intrinsics"].shape == (n, 3, 3) and z["image"].shape == (n, h, w, 3)
        assert {k: str(z[k].dtype) for k in z.files} == RESULTS_KEYS
        assert np.allclose(z["extrinsics"][0], np.eye(4)[:3])  # world = input camera
    bank = json.loads((root / "memory_bank" / "index.json").read_text())
    assert [e["source"] for e in bank].count("input") == 1
    assert sum(e["source"] == "orbit" for e in bank) == 6  # 8 keyframes capped by 6 frames
    meta = scene.load()
    assert meta.depth_source.kind == "file" and meta.depth_source.fallback is False


def test_cache_grows_after_each_trajectory(finished):
    scene, _, _ = finished
    stages = scene.load().stages
    before = stages["update_cache/orbit"].info["alignment"]["points_before"]
    for name in ("orbit", "up", "right", "left"):
        a = stages[f"update_cache/{name}"].info["alignment"]
        assert a["points_after"] > a["points_before"] >= before
        assert a["median_rmse_after_m"] < 0.01  # Umeyama residuals recorded, frames agree with the cache


def test_frames_agree_with_each_other_and_the_cache(finished):
    scene, _, _ = finished
    cache = PointCache.load(scene.cache_ply)
    tree = cKDTree(cache.xyz)
    res = load_results(scene.results_npz)
    c2w = res.c2w()
    from worldstereo.cameras import Camera
    from worldstereo.geometry import unproject_depth

    cams = [Camera(res.K[i].astype(float), c2w[i], 96, 72) for i in range(len(res))]
    # reprojecting a generated frame's depth lands on the cache
    for i in (3, 9, 15, 22):
        pts = unproject_depth(np.where(res.conf[i] > 0, res.depth[i], 0), cams[i].K, cams[i].c2w).reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(1)]  # conf 0 = pixels the generator itself marks unreliable
        d, _ = tree.query(pts)
        px = d / (pts[:, 2] / cams[i].K[0, 0])  # distance in pixel footprints at that depth
        assert np.median(px) < 1.0 and np.mean(px < 2.0) > 0.95, (i, np.median(px))
    # a cache point seen in two generated frames has the same colour in both; "seen" = the point
    # existed when both frames were made (later trajectories add points the earlier frame never saw)
    step_of = lambda i: (i - 1) // 6 + 1  # results.npz: input, then 6 frames per trajectory
    frame_of = lambda i: (i - 1) % 6
    pairs = [(4, 10), (8, 16), (13, 21)]
    for a, b in pairs:
        seen = cache.select((cache.step < step_of(a)) | ((cache.step == step_of(a)) & (cache.frame <= frame_of(a))))
        ra, rb = seen.render(cams[a]), seen.render(cams[b])
        ia = {int(k): p for p, k in enumerate(ra.index.ravel()) if k >= 0}
        common = [(ia[int(k)], p) for p, k in enumerate(rb.index.ravel()) if k >= 0 and int(k) in ia]
        assert len(common) > 500
        pa, pb = np.array(common).T
        ca = res.image[a].reshape(-1, 3)[pa].astype(float)
        cb = res.image[b].reshape(-1, 3)[pb].astype(float)
        diff = np.abs(ca - cb).mean(1)
        assert np.median(diff) < 8 and np.mean(diff < 30) > 0.9, (a, b, np.median(diff))


def test_second_run_does_no_work(finished, capsys):
    scene, cfg, _ = finished
    before = {p: p.stat().st_mtime_ns for p in scene.root.rglob("*") if p.is_file()}
    run_pipeline(scene, cfg)
    out = capsys.readouterr().out
    assert "done in" not in out and out.count("up to date") == 11
    after = {p: p.stat().st_mtime_ns for p in scene.root.rglob("*") if p.is_file()}
    meta = ("scene.json", ".worldstereo.lock")  # the manifest and the writer lock's holder note
    assert {k: v for k, v in after.items() if k.name not in meta} == {k: v for k, v in before.items() if k.name not in meta}


def test_force_and_until(finished, tmp_path):
    scene, cfg, _ = finished
    other = open_scene(tmp_path / "s2", create=True)
    run_pipeline(other, cfg, until="plan")
    assert (other.root / "trajectories" / "left.json").exists() and not (other.root / "videos").exists()
    run_pipeline(other, cfg, until="generate")
    assert (other.root / "videos" / "orbit.mp4").exists() and "update_cache/orbit" not in other.load().stages
    # a changed config re-does only what depends on it: the planner changes, the input does not
    import dataclasses

    cfg2 = dataclasses.replace(cfg, plan=PlanConfig(planner=PlannerConfig(frames=4)))
    prep = other.load().stages["prepare"].run
    run_pipeline(other, cfg2, until="plan")
    assert other.load().stages["prepare"].run == prep
    assert len(load_trajectory(other.trajectory("up"))) == 4


def test_missing_ffmpeg_stops_generate_before_it_generates(finished, tmp_path, monkeypatch):
    """generate writes its videos after the backend ran (minutes per trajectory with a diffusion model):
    without ffmpeg it must stop before, with nothing of that stage written."""
    from worldstereo.errors import InputError

    _, cfg, _ = finished
    other = open_scene(tmp_path / "s3", create=True)
    run_pipeline(other, cfg, until="plan")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(InputError, match="no ffmpeg to write mp4 videos: pip install imageio-ffmpeg"):
        run_pipeline(other, cfg, until="generate")
    assert not (other.root / "videos").exists() and not (other.root / "frames").exists()
    assert not any(k.startswith("generate/") for k in other.load().stages)


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_kill_midway_then_rerun_gives_same_outputs(tiny_inputs, tmp_path):
    _, _, args = tiny_inputs
    clean = tmp_path / "clean"
    p = _cli(args + ["--scene", str(clean)])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    killed = tmp_path / "killed"
    p = _cli(args + ["--scene", str(killed)])
    for line in p.stdout:  # kill while the second trajectory is being generated
        if "[update_cache/orbit] done" in line:
            time.sleep(0.3)
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert not (killed / "exports" / "npz" / "results.npz").exists()
    p = _cli(args + ["--scene", str(killed)])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "[generate/orbit] up to date" in out  # finished work is trusted, the rest is redone
    a = np.load(clean / "exports" / "npz" / "results.npz")
    b = np.load(killed / "exports" / "npz" / "results.npz")
    for k in RESULTS_KEYS:
        assert np.array_equal(a[k], b[k]), k
    assert (clean / "cache.ply").read_bytes() == (killed / "cache.ply").read_bytes()
    assert not list(killed.rglob(".tmp-*"))


@pytest.mark.slow
def test_ctrl_c_message_and_resume(tiny_inputs, tmp_path):
    _, _, args = tiny_inputs
    scene = tmp_path / "s"
    p = _cli(args + ["--scene", str(scene)], preexec_fn=sigint_as_in_a_terminal)
    for line in p.stdout:
        if "[plan] done" in line:
            p.send_signal(signal.SIGINT)
            break
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err and "rerun" in err
    p = _cli(args + ["--scene", str(scene)])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "[prepare] up to date" in out and (scene / "exports" / "npz" / "results.npz").exists()


def test_export_transforms_matches_results(finished, tmp_path):
    from utils.export import CameraJson, Transforms
    from worldstereo.cameras import trajectory_from_nerf

    scene, _, _ = finished
    out = Transforms(scene.root, tmp_path / "transforms.json").main()
    traj = trajectory_from_nerf(json.loads(out.read_text()))
    res = load_results(scene.results_npz)
    assert len(traj) == len(res)
    for cam, w2c, K in zip(traj.cameras, res.extrinsics_w2c, res.K):
        assert np.allclose(cam.w2c[:3], w2c, atol=1e-5) and np.allclose(cam.K, K, atol=1e-4)
    ws = CameraJson(scene.root, "up", tmp_path / "up.json").main()
    back = load_trajectory(ws)
    assert np.allclose(back.c2w(), load_trajectory(scene.trajectory("up")).c2w())


def test_world_ply_is_the_confident_cache_and_never_fills_observed_free_space(finished):
    from worldstereo.cameras import Camera
    from worldstereo.io.ply import read_ply
    from worldstereo.memory.cache import WORLD_MIN_CONF, violates_free_space

    scene, cfg, _ = finished
    assert "world.ply" in scene.load().stages["export"].outputs
    v = read_ply(scene.world_ply)  # re-read with the plain PLY reader
    cache = PointCache.load(scene.cache_ply)
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    assert (v["conf"] >= WORLD_MIN_CONF).all()
    assert (v["step"] > 0).any()  # some synthesised points were trusted
    m = scene.load()
    W, H = m.working_size
    input_cam = Camera(np.asarray(m.K), np.eye(4), W, H)
    depth0 = np.load(scene.input_depth)
    # every cache point that passes both tests, and nothing else (the geometric backend stores no
    # low-confidence guesses any more, so this may be the whole cache)
    expected = (cache.conf >= WORLD_MIN_CONF) & ((cache.step == 0) | ~violates_free_space(cache.xyz, input_cam, depth0))
    assert 0 < len(xyz) == int(expected.sum()) <= len(cache)
    assert not violates_free_space(xyz[v["step"] > 0], input_cam, depth0).any()
