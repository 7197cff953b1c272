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

    before = {name: snapshot(base / name) for name in cases} | {"inputs": snapshot(base / "inputs")}
    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = {name: ex.submit(run, script, *args) for name, (script, args, _, _) in cases.items()}
        procs = {name: fut.result() for name, fut in futures.items()}
    after = {name: snapshot(base / name) for name in cases} | {"inputs": snapshot(base / "inputs")}
    return {"cases": cases, "procs": procs, "before": before, "after": after}


CASES = ["missing_image", "garbage_image", "truncated_png", "depth_shape", "depth_nan", "depth_negative",
         "custom_nonrigid", "unwritable", "newer_schema_run", "newer_schema_generate", "foreign_folder"]


@pytest.mark.parametrize("name", CASES)
def test_one_line_error_and_nothing_touched(results, name):
    script, args, path, word = results["cases"][name]
    p = results["procs"][name]
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    assert p.returncode == 2, out
    lines = p.stderr.splitlines()
    assert len(lines) == 1, f"stderr must be one line, got:\n{p.stderr}"
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    assert word in lines[0], lines[0]
    assert results["after"][name] == results["before"][name], f"{name}: files changed"


def test_inputs_untouched(results):
    assert results["after"]["inputs"] == results["before"]["inputs"]


def test_all_cases_covered(results):
    assert sorted(results["cases"]) == sorted(CASES)
