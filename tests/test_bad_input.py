"""Bad input, run through the real scripts: exit code 2, one line `error: <path>: <problem>` on stderr,
no traceback, and nothing of the user's touched: inputs, existing scenes and foreign folders stay
byte- and mtime-identical (directories included, so not even a temp file may come and go)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
H, W = 48, 64
COMMON = ["--fov-deg", "60", "--long-side", "64", "--frames", "4"]


def run(script: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def snapshot(root: Path) -> dict:
    """Every file's content hash and mtime, every folder's mtime (a created-then-removed temp shows)."""
    out = {".": ("dir", root.stat().st_mtime_ns)}
    for p in sorted(root.rglob("*")):  # pathlib's glob includes dotfiles (.tmp-*)
        st = p.stat()
        out[str(p.relative_to(root))] = ("dir", st.st_mtime_ns) if p.is_dir() else \
            (hashlib.sha1(p.read_bytes()).hexdigest(), st.st_mtime_ns)
    return out


def _tiny_inputs(d: Path) -> dict[str, Path]:
    d.mkdir()
    v, u = np.mgrid[0:H, 0:W]
    rgb = np.stack([127 + 100 * np.sin(u / 5.0), 127 + 100 * np.cos(v / 7.0), 127 + 100 * np.sin((u + v) / 9.0)],
                   -1).astype(np.uint8)
    f = {k: d / n for k, n in [("image", "photo.png"), ("depth", "depth.npy"), ("garbage", "garbage.png"),
                               ("truncated", "truncated.png"), ("shape", "depth_shape.npy"), ("nan", "depth_nan.npy"),
                               ("neg", "depth_neg.npy"), ("traj", "scaled_rotation.json")]}
    cv2.imwrite(str(f["image"]), rgb)
    depth = (2.0 + 0.5 * (u / W)).astype(np.float32)
    np.save(f["depth"], depth)
    f["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    # a valid PNG signature, then junk (a truncated download): OpenCV logs a WARN line on its own
    f["truncated"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"garbage" * 10)
    np.save(f["shape"], np.full((10, 10), 2.0, np.float32))
    bad = depth.copy()
    bad[5, 7] = np.nan
    np.save(f["nan"], bad)
    bad = depth.copy()
    bad[10:12, 3] = -1.0
    np.save(f["neg"], bad)
    scaled = np.eye(4)
    scaled[:3, :3] *= 1.5  # not a rotation
    K = [[55.0, 0, 31.5], [0, 55.0, 23.5], [0, 0, 1]]
    f["traj"].write_text(json.dumps({"width": W, "height": H,
                                     "frames": [{"c2w": np.eye(4).tolist(), "K": K}, {"c2w": scaled.tolist(), "K": K}]}))
    return f


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Build inputs and one real scene, lay out a folder per case, run all cases in parallel."""
    base = tmp_path_factory.mktemp("bad_input")
    f = _tiny_inputs(base / "inputs")
    good = ["--image", f["image"], "--depth", f["depth"], *COMMON]
    scene_ok = base / "scene_ok"
    r = run("run_pipeline.py", *good, "--scene", scene_ok, "--until", "prepare")
    assert r.returncode == 0, r.stderr

    def case_dir(name: str, with_scene: bool = True) -> Path:
        d = base / name
        d.mkdir()
        if with_scene:
            shutil.copytree(scene_ok, d / "scene")
        return d

    cases: dict[str, tuple[str, list, Path, str]] = {}  # name: (script, args, expected path, problem word)
    d = case_dir("missing_image")
    cases["missing_image"] = ("run_pipeline.py", ["--image", f["image"].with_name("nope.png"), "--depth", f["depth"],
                                                  *COMMON, "--scene", d / "scene"],
                              f["image"].with_name("nope.png"), "not found")
    for name, key in [("garbage_image", "garbage"), ("truncated_png", "truncated")]:
        d = case_dir(name)
        cases[name] = ("run_pipeline.py", ["--image", f[key], "--depth", f["depth"], *COMMON, "--scene", d / "scene"],
                       f[key], "not a readable image")
    for name, key, word in [("depth_shape", "shape", "shape (10, 10)"), ("depth_nan", "nan", "NaN"),
                            ("depth_negative", "neg", "negative")]:
        d = case_dir(name)
        cases[name] = ("run_pipeline.py", ["--image", f["image"], "--depth", f[key], *COMMON, "--scene", d / "scene"],
                       f[key], word)
    d = case_dir("custom_nonrigid")  # same inputs as scene_ok: prepare is up to date, plan must refuse
    cases["custom_nonrigid"] = ("run_pipeline.py", [*good, "--custom", f["traj"], "--scene", d / "scene"],
                                f["traj"], "frame 1 c2w is not a rigid transform")
    d = case_dir("unwritable", with_scene=False)
    (d / "file.txt").write_text("a regular file, not a folder\n")
    cases["unwritable"] = ("run_pipeline.py", [*good, "--scene", d / "file.txt" / "scene"],
                           d / "file.txt" / "scene", "cannot create scene folder")
    for name, script, extra in [("newer_schema_run", "run_pipeline.py", good),
                                ("newer_schema_generate", "generate_video.py", ["--trajectory", "orbit"])]:
        d = case_dir(name)
        manifest = d / "scene" / "scene.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema_version": 999}))
        (d / "scene" / ".tmp-from-newer-version").write_text("not ours to clean")
        cases[name] = (script, [*extra, "--scene", d / "scene"], manifest, "newer schema")
    d = case_dir("foreign_folder", with_scene=False)
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("my notes\n")
    (d / "mine" / "holiday").mkdir()
    (d / "mine" / "holiday" / "beach.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "mine" / ".tmp-draft").write_text("a user file that merely looks like our temp\n")
    cases["foreign_folder"] = ("run_pipeline.py", [*good, "--scene", d / "mine"], d / "mine", "no scene.json")

    _more_cases(cases, case_dir, f, good, scene_ok)
    before = {name: snapshot(base / name) for name in cases} | {"inputs": snapshot(base / "inputs")}
    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = {name: ex.submit(run, script, *args) for name, (script, args, _, _) in cases.items()}
        procs = {name: fut.result() for name, fut in futures.items()}
    after = {name: snapshot(base / name) for name in cases} | {"inputs": snapshot(base / "inputs")}
    return {"cases": cases, "procs": procs, "before": before, "after": after}


def _more_cases(cases: dict, case_dir, f: dict, good: list, scene_ok: Path) -> None:
    """The resume issue's list: each must fail before the first write, in one line."""
    d0 = f["image"].parent
    intr = ["--long-side", "64", "--frames", "4", "--image", f["image"], "--depth", f["depth"]]
    tiny = d0 / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    thin = d0 / "thin.png"
    cv2.imwrite(str(thin), np.zeros((50, 2000, 3), np.uint8))
    np.save(d0 / "depth_int.npy", np.full((H, W), 2500, np.int64))
    inf = np.full((H, W), 2.0, np.float32)
    inf[3, 4] = np.inf
    np.save(d0 / "depth_inf.npy", inf)
    (d0 / "up.json").write_text(f["traj"].read_text().replace("1.5", "1.0"))
    cv2.imwrite(str(d0 / "list.jpg"), np.full((20, 20, 3), 200, np.uint8))
    for name, args, path, word in [
        ("intrinsics_nan", [*intr, "--intrinsics", "nan", "55", "31.5", "23.5"], None, "--intrinsics must be finite"),
        ("long_side_0", [*good, "--long-side", "0"], None, "--long-side must be between 16 and 8192"),
        ("long_side_1", [*good, "--long-side", "1"], None, "--long-side must be between 16 and 8192"),
        ("frames_0", [*good, "--frames", "0"], None, "--frames must be at least 2"),
        ("order_empty", [*good, "--order"], None, "--order is empty"),
        ("order_sideways", [*good, "--order", "sideways"], None, "unknown trajectory 'sideways'"),
        ("custom_named_standard", [*good, "--custom", d0 / "up.json"], d0 / "up.json", "named like the standard 'up'"),
        ("image_1x1", ["--image", tiny, *COMMON], tiny, "1×1 pixels"),
        ("image_2000x50", ["--image", thin, *COMMON], thin, "short side would be"),
        ("depth_int64", ["--image", f["image"], "--depth", d0 / "depth_int.npy", *COMMON], d0 / "depth_int.npy",
         "integer dtype int64"),
        ("depth_inf", ["--image", f["image"], "--depth", d0 / "depth_inf.npy", *COMMON], d0 / "depth_inf.npy",
         "1 inf values"),
        ("fov_and_intrinsics", [*good, "--intrinsics", "55", "55", "31.5", "23.5"], None, "give one of them, not both"),
        ("principal_point_outside", [*intr, "--intrinsics", "55", "55", "400", "23.5"], f["image"],
         "principal point (400.0, 23.5) lies outside"),
        ("fov_180", [*intr, "--fov-deg", "180"], None, "--fov-deg must be from 1 to 179"),
        ("images_jpeg", ["--images", d0 / "list.jpg"], d0 / "list.jpg", "not a text file"),
    ]:
        d = case_dir(name)
        cases[name] = ("run_pipeline.py", [*args, "--scene", d / "scene"], path, word)
    d = case_dir("manifest_not_object")
    (d / "scene" / "scene.json").write_text("[1, 2]")
    cases["manifest_not_object"] = ("generate_video.py", ["--scene", d / "scene", "--trajectory", "orbit"],
                                    d / "scene" / "scene.json", "must be a JSON object")
    d = case_dir("scene_in_proc", with_scene=False)
    cases["scene_in_proc"] = ("run_pipeline.py", [*good, "--scene", "/proc/worldstereo-test"],
                              Path("/proc/worldstereo-test"), "cannot create")
    _reconstruct_cases(cases, case_dir)


def _reconstruct_cases(cases: dict, case_dir) -> None:
    """reconstruct.py on a results.npz that is truncated, has a NaN pose, a zero focal or one frame."""
    rng = np.random.default_rng(0)
    n = 3
    arrays = {"depth": np.full((n, H, W), 2.0, np.float32), "conf": np.ones((n, H, W), np.float32),
              "extrinsics": np.tile(np.eye(4, dtype=np.float32)[:3], (n, 1, 1)),
              "intrinsics": np.tile(np.array([[55, 0, 31.5], [0, 55, 23.5], [0, 0, 1]], np.float32), (n, 1, 1)),
              "image": rng.integers(0, 255, (n, H, W, 3), dtype=np.uint8)}
    for name, mutate, word in [
        ("npz_truncated", None, "not a readable .npz"),
        ("npz_nan_pose", lambda a: a["extrinsics"].__setitem__((1, 0, 3), np.nan), "frame 1: extrinsics contain NaN"),
        ("npz_zero_focal", lambda a: a["intrinsics"].__setitem__((2, 0, 0), 0.0), "frame 2: intrinsics need"),
        ("npz_one_frame", "one", "alignment needs at least 2"),
    ]:
        d = case_dir(name, with_scene=False)
        npz = d / "v2w" / "exports" / "npz" / "results.npz"
        npz.parent.mkdir(parents=True)
        a = {k: v.copy() for k, v in arrays.items()}
        if mutate == "one":
            a = {k: v[:1] for k, v in a.items()}
        elif mutate is not None:
            mutate(a)
        np.savez(npz, **a)
        if mutate is None:
            npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
        cases[name] = ("reconstruct.py", ["--scene", d / "v2w"], npz, word)
    for name, flag, value, word in [  # a good results.npz, a setting that makes no sense
        ("prior_sigma_0", "--icp.centre-prior-sigma", "0", "--icp.centre-prior-sigma must be > 0"),
        ("flow_scale_negative", "--icp.corr.flow-finest-scale", "-1", "--icp.corr.flow-finest-scale must be ≥ 0"),
        ("bundle_depth_sigma_0", "--icp.bundle.depth-sigma", "0", "--icp.bundle.depth-sigma must be > 0"),
        ("fuse_max_error_negative", "--icp.fuse.max-error", "-0.01", "--icp.fuse.max-error must be ≥ 0"),
    ]:
        d = case_dir(name, with_scene=False)
        npz = d / "v2w" / "exports" / "npz" / "results.npz"
        npz.parent.mkdir(parents=True)
        np.savez(npz, **arrays)
        cases[name] = ("reconstruct.py", ["--scene", d / "v2w", flag, value], None, word)

CASES = ["missing_image", "garbage_image", "truncated_png", "depth_shape", "depth_nan", "depth_negative",
         "custom_nonrigid", "unwritable", "newer_schema_run", "newer_schema_generate", "foreign_folder",
         "intrinsics_nan", "long_side_0", "long_side_1", "frames_0", "order_empty", "order_sideways",
         "custom_named_standard", "image_1x1", "image_2000x50", "depth_int64", "depth_inf", "fov_and_intrinsics",
         "principal_point_outside", "fov_180", "images_jpeg", "manifest_not_object", "scene_in_proc",
         "npz_truncated", "npz_nan_pose", "npz_zero_focal", "npz_one_frame", "prior_sigma_0", "flow_scale_negative",
         "bundle_depth_sigma_0", "fuse_max_error_negative"]


@pytest.mark.parametrize("name", CASES)
def test_one_line_error_and_nothing_touched(results, name):
    script, args, path, word = results["cases"][name]
    p = results["procs"][name]
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    assert p.returncode == 2, out
    lines = p.stderr.splitlines()
    assert len(lines) == 1, f"stderr must be one line, got:\n{p.stderr}"
    assert lines[0].startswith(f"error: {path}: " if path is not None else "error: --"), lines[0]
    assert word in lines[0], lines[0]
    assert results["after"][name] == results["before"][name], f"{name}: files changed"


def test_inputs_untouched(results):
    assert results["after"]["inputs"] == results["before"]["inputs"]


def test_all_cases_covered(results):
    assert sorted(results["cases"]) == sorted(CASES)
