"""Running a manifest scene through the stage scripts (run_pipeline.py, reconstruct.py) as subprocesses.

Each stage's output goes to <logs>/<script>.log; a failure becomes one line (exit code and the
log's last line), so the benchmark reports it in its table instead of stopping."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from worldstereo.bench.config import BenchSetup
from worldstereo.bench.manifest import ManifestEntry


def run_stage(cmd: list[str], cwd: Path, log: Path, timeout_min: int) -> str | None:
    """Run a stage script; None on success, else a one-line reason (its log keeps the rest)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as f:
            p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_min * 60)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_min} min"
    if p.returncode != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        return f"exit {p.returncode}: {tail[-1][:160] if tail else ''}"
    return None


def pipeline_command(entry: ManifestEntry, setup: BenchSetup) -> list[str]:
    """The run_pipeline.py command line for one entry."""
    cmd = [sys.executable, "run_pipeline.py", "--image", str(entry.image), "--scene", str(entry.scene_dir),
           "--long-side", str(setup.run.long_side), "--frames", str(setup.run.frames)]
    if entry.depth is not None:
        cmd += ["--depth", str(entry.depth)]
    if entry.intrinsics is not None:
        cmd += ["--intrinsics", *[repr(float(x)) for x in entry.intrinsics]]
    return cmd + shlex.split(setup.run.extra)


def _current(scene, stage: str) -> bool:
    """Our scene: the stage's outputs exist and nothing it consumed was rerun since (a stale one is
    redone). A folder without scene.json holds outside results: finished when results.npz is there."""
    if not scene.exists():
        return stage == "export" and scene.results_npz.exists()
    return scene.status(stage).current


def run_entry(entry: ManifestEntry, setup: BenchSetup, logs: Path) -> dict[str, str]:
    """Run the pipeline (and reconstruct.py) for one entry unless its outputs exist.

    Returns the failures as {stage: one-line reason}; stages that were not needed are not listed."""
    failures: dict[str, str] = {}
    scene = entry.scene
    timeout = setup.run.stage_timeout_min
    if entry.run and (setup.run.rerun or not _current(scene, "export")):
        err = run_stage(pipeline_command(entry, setup), setup.scripts_dir, logs / "run_pipeline.log", timeout)
        if err:
            failures["pipeline"] = f"run_pipeline.py failed ({err})"
    wants_reconstruct = "reconstruct" in setup.methods and setup.run.reconstruct
    if wants_reconstruct and scene.results_npz.exists() and not _current(scene, "reconstruct"):
        cmd = [sys.executable, "reconstruct.py", "--scene", str(entry.scene_dir)]
        err = run_stage(cmd, setup.scripts_dir, logs / "reconstruct.log", timeout)
        if err:
            failures["reconstruct"] = f"reconstruct.py failed ({err})"
    return failures
