"""A panorama through the real scripts: run_pipeline.py --panorama / --pano-bank, the rerun, bad
input, the release's layout out (utils.export worldstereo-pano) and in, reconstruct on the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worldstereo.cameras import load_trajectory
from worldstereo.io.images import read_image, write_image
from worldstereo.memory.bank import MemoryBank
from worldstereo.panorama import make_bank, points_from_panorama, read_pano_bank, write_pano_bank
from worldstereo.panorama.bank import c2w_from_release
from worldstereo.panorama.synthetic_room import Room, render_panorama
from worldstereo.pipeline.prepare_pano import scaled_layout

REPO = Path(__file__).resolve().parents[1]
PANO_H = 64
SMALL = ["--pano-width", "128", "--pano-view-scale", "0.125", "--frames", "3"]
NAMES = [f"view{k}_{kind}" for kind in ("right", "left", "aerial") for k in range(3)]


def run(cwd: Path, script: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def run_module(cwd: Path, module: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Path:
    """room.png (128×64 synthetic room) and room_d.npy (its exact ray distance) in a fresh folder."""
    d = tmp_path_factory.mktemp("pano")
    rgb, dist = render_panorama(Room(), PANO_H)
    write_image(d / "room.png", rgb)
    np.save(d / "room_d.npy", dist)
    return d


@pytest.fixture(scope="module")
def full_run(room: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The whole pipeline on the tiny panorama, with a relative --scene."""
    r = run(room, "run_pipeline.py", "--panorama", "room.png", "--pano-depth", "room_d.npy", *SMALL,
            "--scene", "scenes/room")
    assert r.returncode == 0, r.stderr[-3000:]
    return room / "scenes" / "room", r


@pytest.mark.slow
def test_panorama_end_to_end(full_run, room: Path) -> None:
    scene, _ = full_run
    m = json.loads((scene / "scene.json").read_text())
    assert m["input_kind"] == "panorama"
    assert m["working_size"] == [104, 60] and m["panorama_size"] == [128, 64]
    assert m["input_depth_meaning"] == "ray-distance"
    assert m["depth_source"]["kind"] == "file" and not m["depth_source"]["fallback"]
    assert m["trajectory_order"] == NAMES
    assert read_image(scene / "input" / "panorama.png").shape == (64, 128, 3)
    # input/depth.npy is the ray distance itself (the exact synthetic one at this size)
    np.testing.assert_array_equal(np.load(scene / "input" / "depth.npy"), np.load(room / "room_d.npy"))
    # the cache at step 0 is the panoramic cache of that distance map, point for point
    from worldstereo.memory.cache import PointCache

    step0 = PointCache.load(scene / "cache" / "step_00.ply")
    expect = points_from_panorama(read_image(room / "room.png"), np.load(room / "room_d.npy"))
    assert len(step0) == len(expect) == m["cache_points"]["input"]
    np.testing.assert_allclose(step0.xyz, expect.xyz, atol=1e-6)
    bank = MemoryBank(scene / "memory_bank")
    pano = [e for e in bank.entries if e.source == "panorama"]
    assert len(pano) == 27 and {e.step for e in pano} == {0} and sorted(e.frame for e in pano) == list(range(27))
    ref = make_bank(read_image(room / "room.png"), np.load(room / "room_d.npy"), scaled_layout(0.125))
    for e in pano:
        np.testing.assert_allclose(e.camera.c2w, ref[e.frame].camera.c2w, atol=1e-9)
        np.testing.assert_array_equal(bank.depth(e), ref[e.frame].depth_m)
    res = np.load(scene / "exports" / "npz" / "results.npz")
    assert res["image"].shape[0] == 27 + 9 * 3
    frames = json.loads((scene / "exports" / "npz" / "frames.json").read_text())
    assert frames[0] == {"trajectory": "panorama", "frame": 0} and frames[27] == {"trajectory": NAMES[0], "frame": 0}


@pytest.mark.slow
def test_panorama_rerun_is_up_to_date(full_run, room: Path) -> None:
    scene, _ = full_run
    before = (scene / "scene.json").read_text()
    r = run(room, "run_pipeline.py", "--panorama", "room.png", "--pano-depth", "room_d.npy", *SMALL,
            "--scene", "scenes/room")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "done in" not in r.stdout + r.stderr
    assert (r.stdout + r.stderr).count("up to date") == 2 + 2 * 9 + 1  # prepare, plan, 9 × (generate, update), export
    assert json.loads((scene / "scene.json").read_text())["stages"] == json.loads(before)["stages"]


@pytest.mark.slow
def test_export_worldstereo_pano_and_reconstruct(full_run, room: Path, tmp_path: Path) -> None:
    scene, _ = full_run
    r = run_module(REPO, "utils.export", "worldstereo-pano", "--scene", scene, "--out", tmp_path / "task")
    assert r.returncode == 0, r.stderr[-2000:]
    views = read_pano_bank(tmp_path / "task" / "pano_bank")  # an independent reader of the release's layout
    bank = MemoryBank(scene / "memory_bank")
    pano = sorted((e for e in bank.entries if e.source == "panorama"), key=lambda e: e.frame)
    assert len(views) == 27
    for v, e in zip(views, pano):
        np.testing.assert_allclose(v.camera.c2w, e.camera.c2w, atol=1e-6)
        np.testing.assert_allclose(v.camera.K, e.camera.K, atol=1e-6)
        np.testing.assert_array_equal(v.rgb, bank.image(e))
    cam = json.loads((tmp_path / "task" / "view1" / "traj_left" / "camera.json").read_text())
    t = load_trajectory(scene / "trajectories" / "view1_left.json")
    assert len(cam["extrinsic"]) == len(t) == 3
    for w2c_rel, c in zip(cam["extrinsic"], t.cameras):
        np.testing.assert_allclose(c2w_from_release(np.asarray(w2c_rel)), c.c2w, atol=1e-9)
    r = run(room, "reconstruct.py", "fast", "--scene", "scenes/room")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (scene / "align" / "canonical.ply").stat().st_size > 1000


@pytest.mark.slow
def test_pano_bank_input_gives_the_same_cameras(full_run, room: Path) -> None:
    scene, _ = full_run
    rgb = read_image(room / "room.png")
    write_pano_bank(room / "release" / "pano_bank", make_bank(rgb, None, scaled_layout(0.125)))
    r = run(room, "run_pipeline.py", "--pano-bank", "release/pano_bank", "--pano-depth", "room_d.npy", *SMALL,
            "--until", "plan")
    assert r.returncode == 0, r.stderr[-2000:]
    other = room / "scenes" / "release"  # the default scene name: the folder holding pano_bank
    a = sorted((e for e in MemoryBank(scene / "memory_bank").entries if e.source == "panorama"), key=lambda e: e.frame)
    b = sorted((e for e in MemoryBank(other / "memory_bank").entries), key=lambda e: e.frame)
    assert len(a) == len(b) == 27 and {e.source for e in b} == {"panorama"}
    for ea, eb in zip(a, b):
        np.testing.assert_allclose(eb.camera.c2w, ea.camera.c2w, atol=1e-6)
        np.testing.assert_allclose(eb.camera.K, ea.camera.K, atol=1e-6)
        np.testing.assert_array_equal(MemoryBank(other / "memory_bank").depth(eb), MemoryBank(scene / "memory_bank").depth(ea))
    for name in NAMES:  # same bank cameras and the same distance map: the same planned trajectories
        for ca, cb in zip(load_trajectory(scene / "trajectories" / f"{name}.json").cameras,
                          load_trajectory(other / "trajectories" / f"{name}.json").cameras):
            np.testing.assert_allclose(cb.c2w, ca.c2w, atol=1e-6)


def test_spherical_prior_is_a_loud_fallback(room: Path) -> None:
    r = run(room, "run_pipeline.py", "--panorama", "room.png", *SMALL, "--scene", "prior", "--until", "prepare")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SPHERICAL PRIOR" in r.stdout + r.stderr
    m = json.loads((room / "prior" / "scene.json").read_text())
    assert m["depth_source"]["kind"] == "prior" and m["depth_source"]["fallback"] is True
    assert np.all(np.load(room / "prior" / "input" / "depth.npy") == 2.5)  # the default --median-depth-m


@pytest.mark.parametrize("case", ["not_2to1", "depth_size", "depth_nan", "depth_for_photo_flag", "two_depth_sources",
                                  "no_model_folder"])
def test_bad_panorama_input_one_line_exit_2_nothing_written(room: Path, case: str) -> None:
    bad = room / f"bad_{case}"
    bad.mkdir()
    rgb = read_image(room / "room.png")
    args = ["--panorama", "room.png", "--pano-depth", "room_d.npy"]
    if case == "not_2to1":
        write_image(bad / "p.png", rgb[:, :100])
        args, expect = ["--panorama", "p.png"], "p.png: not an equirectangular panorama: 100x64 is not 2:1"
    elif case == "depth_size":
        np.save(bad / "d.npy", np.ones((20, 40), np.float32))
        args, expect = ["--panorama", "room.png", "--pano-depth", "d.npy"], "d.npy: depth is 40x20, matching neither"
    elif case == "depth_nan":
        d = np.load(room / "room_d.npy")
        d[3, 4] = np.nan
        np.save(bad / "d.npy", d)
        args, expect = ["--panorama", "room.png", "--pano-depth", "d.npy"], "d.npy: depth contains 1 NaN"
    elif case == "two_depth_sources":
        args += ["--depth-model", str(bad)]
        expect = "--depth-model and --pano-depth both given: give one depth source"
    elif case == "no_model_folder":
        args, expect = ["--panorama", "room.png", "--depth-model", "nowhere"], "nowhere: depth model folder not found"
    else:
        args, expect = ["--panorama", "room.png", "--depth", "room_d.npy"], "--pano-depth"
    for a in ("room.png", "room_d.npy"):
        (bad / a).write_bytes((room / a).read_bytes())
    r = run(bad, "run_pipeline.py", *args, *SMALL, "--scene", "out")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (bad / "out").exists()
