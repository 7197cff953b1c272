"""eval_benchmark: scores a finished scene, reports a missing stage, resumes, writes the table;
bad manifests and --out folders are one-line errors (exit 2, nothing written); failed scenes exit 1."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from configs.eval import EvalConfig, RunConfig, ScoreConfig
from eval_benchmark import evaluate
from worldstereo.bench.manifest import read_manifest
from worldstereo.bench.scoring import frames_points
from worldstereo.bench.writers import ExportConfig, write_scene
from worldstereo.errors import InputError
from worldstereo.io.ply import write_ply
from worldstereo.io.results import load_results, save_results
from worldstereo.launch import LaunchConfig

REPO = Path(__file__).resolve().parents[1]


def _fake_run(tmp_path: Path) -> dict:
    """A 'finished scene' whose frames and cache are the exact synthetic frames."""
    entry = write_scene("objects", 5, tmp_path / "synth",
                        ExportConfig(width=96, height=72, paths=("orbit",), frames=5, gt_points=5000))
    scene = tmp_path / "scene"
    r = load_results(tmp_path / "synth" / entry["frames"]["orbit"])
    save_results(scene / "exports" / "npz" / "results.npz", r)
    pts = frames_points(r, range(len(r))).astype(np.float32)
    write_ply(scene / "cache.ply", {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]})
    entry = {**entry, "scene_dir": str(scene)}
    for k in ("image", "depth", "gt_points"):
        entry[k] = str(tmp_path / "synth" / entry[k])
    (tmp_path / "m.json").write_text(json.dumps({"scenes": [entry]}))
    return entry


def test_scores_finished_scene_and_resumes(tmp_path):
    _fake_run(tmp_path)
    cfg = EvalConfig(manifest=tmp_path / "m.json", out=tmp_path / "out", run=RunConfig(reconstruct=False),
                     score=ScoreConfig(gt_samples=20000, tau_rel=0.05), launch=LaunchConfig(launcher="debug"))
    result = evaluate(cfg)
    assert result.failed == {}
    by = {r.method: r for r in result.rows}
    assert by["reconstruct"].status == "missing"  # stage unavailable: reported, not a crash
    assert by["pipeline"].status == "ok" and by["pipeline"].fscore > 0.9
    assert by["pipeline"].psnr is not None and by["pipeline"].psnr > 40  # exact frames
    assert by["pipeline"].q_geometric > 0.95 and by["pipeline"].lpips is None
    assert by["input_only"].precision > 0.99
    table = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert table["rows"][-1]["scene"] == "mean" and "command" in table["provenance"]
    assert table["config"]["launch"]["log_dir"] == str(tmp_path / "out" / "logs" / "jobs")
    assert (tmp_path / "out" / "benchmark.csv").read_text().startswith("scene,method")
    # a rerun finds the scores and runs nothing
    mtime = (tmp_path / "out" / "scores" / "objects_005.json").stat().st_mtime
    evaluate(cfg)
    assert (tmp_path / "out" / "scores" / "objects_005.json").stat().st_mtime == mtime


def test_single_scene_with_gt_points(tmp_path):
    entry = _fake_run(tmp_path)
    cfg = EvalConfig(scene=Path(entry["scene_dir"]), gt_points=Path(entry["gt_points"]), out=tmp_path / "o",
                     methods=("pipeline", "input_only"), launch=LaunchConfig(launcher="debug"))
    rows = evaluate(cfg).rows
    assert sorted(r.method for r in rows) == ["input_only", "pipeline"]
    assert all(r.status == "ok" for r in rows if r.scene != "mean")


# --------------------------------------------------------------------------- manifests


def _manifest(tmp_path: Path, **entry) -> Path:
    (tmp_path / "photo.png").write_bytes(b"not read here")
    (tmp_path / "gt.ply").write_bytes(b"not read here")
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"scenes": [{"image": "photo.png", "gt_points": "gt.ply", **entry}]}))
    return path


def test_manifest_entry_paths_and_defaults(tmp_path):
    m = _manifest(tmp_path, intrinsics=[100, 110, 31.5, 23.5], synthetic=True, kind="room", seed=3)
    (e,) = read_manifest(m, tmp_path / "out")
    assert e.name == "photo" and e.image == tmp_path / "photo.png" and e.gt_points == tmp_path / "gt.ply"
    assert e.scene_dir == tmp_path / "out" / "scenes" / "photo" and e.run and e.depth is None
    assert e.intrinsics == (100.0, 110.0, 31.5, 23.5) and e.synthetic and (e.kind, e.seed) == ("room", 3)


@pytest.mark.parametrize("entry, problem", [
    ({"intrinsics": [100, 100, 32]},
     "scenes[0].intrinsics: must be [fx, fy, cx, cy] (finite, fx, fy > 0), got [100, 100, 32]"),
    ({"intrinsics": [0, 100, 32, 24]}, "scenes[0].intrinsics: must be [fx, fy, cx, cy]"),
    ({"gt_points": None}, "scenes[0]: no ground truth: give gt_points (or synthetic: true with kind and seed)"),
    ({"depth": "missing.npy"}, "scenes[0].depth: {tmp}/missing.npy not found"),
    ({"name": "../up"}, "scenes[0].name: must be a plain folder name, got '../up'"),
    ({"synthetic": True, "kind": "castle", "seed": 1}, "scenes[0].kind: unknown synthetic scene kind 'castle'"),
    ({"synthetic": True, "kind": "room", "seed": "1"}, "scenes[0].seed: a synthetic scene needs an integer seed"),
    ({"median_depth": -1}, "scenes[0].median_depth: must be a positive number, got -1"),
])
def test_bad_manifest_entry_is_one_line(tmp_path, entry, problem):
    m = _manifest(tmp_path, **entry)
    with pytest.raises(InputError) as e:
        read_manifest(m, tmp_path / "out")
    assert e.value.path == str(m)
    assert e.value.problem.startswith(problem.format(tmp=tmp_path)) and "\n" not in e.value.problem


def test_duplicate_names_and_not_json(tmp_path):
    m = _manifest(tmp_path)
    m.write_text(json.dumps({"scenes": [{"image": "photo.png", "gt_points": "gt.ply"}] * 2}))
    with pytest.raises(InputError, match=r"scene names must be unique \('photo' appears 2 times\)"):
        read_manifest(m, tmp_path)
    m.write_text("{scenes")
    with pytest.raises(InputError, match=r"not a readable JSON manifest \(JSONDecodeError\)"):
        read_manifest(m, tmp_path)


# --------------------------------------------------------------------------- the CLI: exit codes, nothing written


def _cli(*args, as_nobody: bool = False) -> subprocess.CompletedProcess:
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([*prefix, sys.executable, "eval_benchmark.py", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def _tree(root: Path) -> dict:
    """Content hash / mtime of every file and folder under root (a created-then-removed temp shows)."""
    out = {".": root.stat().st_mtime_ns}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = (p.is_dir() or hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def test_out_is_a_file(tmp_path):
    m = _manifest(tmp_path)
    (tmp_path / "results.txt").write_text("my notes")
    before = _tree(tmp_path)
    p = _cli("--manifest", m, "--out", tmp_path / "results.txt")
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == [f"error: {tmp_path / 'results.txt'}: --out must be a folder, this is a file"]
    assert _tree(tmp_path) == before
    sub = tmp_path / "results.txt" / "sub"
    p = _cli("--manifest", m, "--out", sub)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"error: {sub}: cannot create the output folder: {sub.parent} is a file"]
    assert _tree(tmp_path) == before


def test_out_in_a_read_only_folder():
    """Read-only for the user running it: as root (who may write anywhere) the CLI runs as nobody."""
    as_nobody = os.geteuid() == 0
    if as_nobody and shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing: cannot make a folder read-only")
    base = Path(tempfile.mkdtemp(prefix="ws-ro-"))  # outside pytest's 0700 tree, so nobody can reach it
    ro = base / "ro"
    try:
        base.chmod(0o755)
        m = _manifest(base)
        ro.mkdir()
        (ro / "old.json").write_text("{}")
        for p in (base, m, base / "photo.png", base / "gt.ply", ro / "old.json"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        ro.chmod(0o555)
        before = _tree(base)
        for out in (ro, ro / "results"):
            p = _cli("--manifest", m, "--out", out, as_nobody=as_nobody)
            assert p.returncode == 2, p.stderr
            assert p.stderr.splitlines() == [f"error: {out}: output folder is not writable ({ro})"]
        assert _tree(base) == before
    finally:
        if ro.exists():
            ro.chmod(0o755)
        shutil.rmtree(base)


def test_failed_scenes_exit_1_and_are_listed(tmp_path):
    """A pipeline that fails (unreadable image) and a job that fails (no ground truth once the run
    failed): both listed under the table and in benchmark.json, exit code 1."""
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 20)
    gt = np.random.default_rng(0).random((100, 3)).astype(np.float32) + [0, 0, 2]
    write_ply(tmp_path / "gt.ply", {"x": gt[:, 0], "y": gt[:, 1], "z": gt[:, 2]})
    scenes = [{"name": "bad_image", "image": "junk.png", "gt_points": "gt.ply"},
              {"name": "no_gt", "image": "junk.png", "synthetic": True, "kind": "room", "seed": 0}]
    (tmp_path / "m.json").write_text(json.dumps({"scenes": scenes}))
    p = _cli("--manifest", tmp_path / "m.json", "--out", tmp_path / "out", "--methods", "pipeline", "input_only",
             "--no-reconstruct", "--launcher", "local", "--max-parallel", "2")
    assert p.returncode == 1, p.stderr
    failed = json.loads((tmp_path / "out" / "benchmark.json").read_text())["failed_scenes"]
    assert sorted(failed) == ["bad_image", "no_gt"]
    assert failed["bad_image"].startswith("run_pipeline.py failed (exit 2: error: ")
    assert "no ground truth" in failed["no_gt"]
    summary = p.stdout.split("Failed scenes (2): ")[1]
    assert "bad_image: run_pipeline.py failed" in summary and "no_gt: " in summary
    table = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    rows = {(r["scene"], r["method"]): r for r in table["rows"]}
    assert rows["bad_image", "pipeline"]["status"] == "missing" and rows["no_gt", "pipeline"]["status"] == "failed"
    assert rows["mean", "pipeline"]["status"] == "0/2 ok"
    stored = json.loads((tmp_path / "out" / "scores" / "bad_image.json").read_text())
    assert list(stored["failures"]) == ["pipeline"]
    # a failed scene is not finished: the rerun runs both again (and still fails)
    p = _cli("--manifest", tmp_path / "m.json", "--out", tmp_path / "out", "--methods", "pipeline", "input_only",
             "--no-reconstruct", "--launcher", "local", "--max-parallel", "2")
    assert p.returncode == 1 and "[launch] 2 job(s) to run, 0 already finished" in p.stderr
