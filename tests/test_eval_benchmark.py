"""eval_benchmark: scores a finished scene, reports a missing stage, resumes, writes the table."""

import json
from pathlib import Path

import numpy as np

from configs.eval import EvalConfig, RunConfig, ScoreConfig
from eval_benchmark import evaluate
from worldstereo.io.ply import write_ply
from worldstereo.io.results import load_results, save_results
from worldstereo.launch import LaunchConfig
from worldstereo.bench.writers import ExportConfig, write_scene


def _fake_run(tmp_path: Path) -> dict:
    """A 'finished scene' whose frames and cache are the exact synthetic frames."""
    entry = write_scene("objects", 5, tmp_path / "synth",
                        ExportConfig(width=96, height=72, paths=("orbit",), frames=5, gt_points=5000))
    scene = tmp_path / "scene"
    r = load_results(tmp_path / "synth" / entry["frames"]["orbit"])
    save_results(scene / "exports" / "npz" / "results.npz", r)
    from eval_benchmark import _frames_points

    pts = _frames_points(r, range(len(r))).astype(np.float32)
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
    rows = evaluate(cfg)
    by = {r["method"]: r for r in rows}
    assert by["reconstruct"]["status"] == "missing"  # stage unavailable: reported, not a crash
    assert by["pipeline"]["status"] == "ok" and by["pipeline"]["fscore"] > 0.9
    assert by["pipeline"]["psnr"] is not None and by["pipeline"]["psnr"] > 40  # exact frames
    assert by["pipeline"]["q_geometric"] > 0.95 and by["pipeline"]["lpips"] is None
    assert by["input_only"]["precision"] > 0.99
    table = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert table["rows"][-1]["scene"] == "mean" and "command" in table["provenance"]
    assert (tmp_path / "out" / "benchmark.csv").read_text().startswith("scene,method")
    # a rerun finds the scores and runs nothing
    mtime = (tmp_path / "out" / "scores" / "objects_005.json").stat().st_mtime
    evaluate(cfg)
    assert (tmp_path / "out" / "scores" / "objects_005.json").stat().st_mtime == mtime


def test_single_scene_with_gt_points(tmp_path):
    entry = _fake_run(tmp_path)
    cfg = EvalConfig(scene=Path(entry["scene_dir"]), gt_points=Path(entry["gt_points"]), out=tmp_path / "o",
                     methods=("pipeline", "input_only"), launch=LaunchConfig(launcher="debug"))
    rows = evaluate(cfg)
    assert sorted(r["method"] for r in rows) == ["input_only", "pipeline"]
    assert all(r["status"] == "ok" for r in rows if r["scene"] != "mean")
