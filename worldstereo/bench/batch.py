"""The benchmark run: one job per manifest scene (worldstereo.launch) that runs the missing stages
and scores the scene into <out>/scores/<scene>.json; a rerun skips scenes scored with the same
settings and no failure.

>>> result = run_benchmark(entries, BenchSetup(ScoreConfig(), RunConfig(), METHODS, repo), out, LaunchConfig())
>>> result.rows, result.failed          # ScoreRow per scene and method; {scene: reason} of failed scenes
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from worldstereo.bench.config import BenchSetup
from worldstereo.bench.manifest import ManifestEntry
from worldstereo.bench.scoring import score_scene
from worldstereo.bench.stages import run_entry
from worldstereo.bench.tables import ScoreRow
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_write_text
from worldstereo.launch import Job, JobOutcome, LaunchConfig, run_jobs

DEFAULT_LOG_DIR = Path("logs/jobs")  # LaunchConfig's default: the benchmark keeps its job logs under <out>


@dataclass
class SceneScores:
    """<out>/scores/<scene>.json: the rows, the settings key they were made with, and stage failures."""

    scene: str
    config_hash: str
    seconds: float
    rows: list[ScoreRow]
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchResult:
    rows: list[ScoreRow]
    failed: dict[str, str]
    """Failed scenes: name → reason (a stage that failed, or the job's error)."""


def check_output_folder(out: Path) -> None:
    """One-line InputError unless `out` is a writable folder or can be created as one; creates nothing."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out must be a folder, this is a file")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(out, f"cannot create the output folder: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(out, f"output folder is not writable ({probe})")


def job_launch(launch: LaunchConfig, out: Path) -> LaunchConfig:
    """The launch settings with job logs under <out>/logs/jobs unless the user chose a log folder."""
    if launch.log_dir == DEFAULT_LOG_DIR:
        return dataclasses.replace(launch, log_dir=out / "logs" / "jobs")
    return launch


def scene_job(entry: ManifestEntry, setup: BenchSetup, out_json: Path) -> list[ScoreRow]:
    """Run (if needed) and score one scene; write its SceneScores to out_json and return the rows."""
    t0 = time.time()
    failures = run_entry(entry, setup, out_json.parent.parent / "logs" / entry.name)
    rows = score_scene(entry, setup, failures)
    scores = SceneScores(entry.name, setup.key(), round(time.time() - t0, 2), rows, failures)
    atomic_write_text(out_json, json.dumps(dataclasses.asdict(scores), indent=1, default=float))
    return rows


def read_scores(path: Path, key: str) -> Optional[SceneScores]:
    """The stored scores of a scene if made with settings `key`, else None."""
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(d, dict) or d.get("config_hash") != key:
        return None
    return SceneScores(d["scene"], key, d.get("seconds", 0.0), [ScoreRow.from_dict(r) for r in d["rows"]],
                       d.get("failures", {}))


def _is_done(path: Path, key: str) -> bool:
    scores = read_scores(path, key)
    return scores is not None and not scores.failures


def run_benchmark(entries: Sequence[ManifestEntry], setup: BenchSetup, out: Path, launch: LaunchConfig,
                  force: bool = False) -> BenchResult:
    """Score every entry (one job each, unfinished ones only unless `force`) and collect the rows."""
    out.mkdir(parents=True, exist_ok=True)
    scores_dir = out / "scores"
    key = setup.key()
    jobs = []
    for e in entries:
        path = scores_dir / f"{e.name}.json"
        done = None if force else (lambda p=path: _is_done(p, key))
        jobs.append(Job(e.name, scene_job, (e, setup, path), done=done))
    outcomes = run_jobs(jobs, launch)
    return _collect(entries, outcomes, setup, scores_dir)


def _collect(entries: Sequence[ManifestEntry], outcomes: Sequence[JobOutcome], setup: BenchSetup,
             scores_dir: Path) -> BenchResult:
    """Rows of every scene from its stored scores; a scene without them gets 'failed' rows."""
    rows: list[ScoreRow] = []
    failed: dict[str, str] = {}
    for e, o in zip(entries, outcomes):
        scores = read_scores(scores_dir / f"{e.name}.json", setup.key())
        if scores is not None and o.status != "failed":
            rows += scores.rows
            if scores.failures:
                failed[e.name] = "; ".join(scores.failures.values())
        else:
            reason = o.error or "no scores written"
            rows += [ScoreRow(e.name, m, "failed", note=reason) for m in setup.methods]
            failed[e.name] = reason
    return BenchResult(rows, failed)
