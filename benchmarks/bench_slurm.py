"""Launcher overhead per job: a tiny scene (96×72, 6 frames per trajectory) through the local
launcher and through Slurm, timed from submission to the job's start, its end, and the moment
run_jobs hands back the result; plus an empty job, which is the overhead alone.

Needs a running Slurm (`bash scripts/local_slurm.sh start`).

    python -m benchmarks.bench_slurm [--repeats 3] [--poll-s 2.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worldstereo.launch import Job, LaunchConfig, run_jobs  # noqa: E402
from worldstereo.pipeline.batch import run_one  # noqa: E402


def timed(fn, *args) -> tuple[float, float]:
    """The job: (start, end) wall-clock times of fn inside the job (this function travels by value)."""
    t_start = time.time()
    if fn is not None:
        fn(*args)
    return t_start, time.time()


def tiny_scene(folder: Path):
    """The tests' textured box (back wall at 3 m, box at 1.8 m, known depth and K), as run_pipeline
    would configure it from `--long-side 96 --frames 6`."""
    import tyro

    from run_pipeline import RunPipeline

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import textured_box_scene

    rgb, depth, K = textured_box_scene()
    cv2.imwrite(str(folder / "box.png"), rgb[..., ::-1])
    np.save(folder / "box_depth.npy", depth)
    argv = ["--image", str(folder / "box.png"), "--depth", str(folder / "box_depth.npy"), "--intrinsics",
            *(str(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])), "--long-side", "96", "--frames", "6"]
    return tyro.cli(RunPipeline, args=argv, config=(tyro.conf.OmitArgPrefixes,)).gen


def one_run(launcher: str, fn, args: tuple, log_dir: Path, poll_s: float) -> dict:
    cfg = LaunchConfig(launcher=launcher, cpus_per_job=1, mem_gb=1, timeout_min=10, log_dir=log_dir, poll_s=poll_s)
    t_submit = time.time()
    out = run_jobs([Job("bench", timed, (fn, *args))], cfg)[0]
    t_back = time.time()
    if out.status != "done":
        raise SystemExit(f"bench job failed: {out.error}")
    t_start, t_end = out.result
    return {"to_start": t_start - t_submit, "run": t_end - t_start, "to_result": t_back - t_end,
            "total": t_back - t_submit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--poll-s", type=float, default=2.0, help="squeue interval (LaunchConfig.poll_s)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    gen = tiny_scene(work)
    print("| launcher | job | submit → start s | run s | end → result back s | total s | overhead s |")
    print("|---|---|---|---|---|---|---|")
    for launcher in ("local", "slurm"):
        for label, fn, args in (("empty", None, ()), ("tiny scene", run_one, (gen,))):
            rows = []
            for i in range(a.repeats):
                job_args = args if fn is None else (gen, work / f"{launcher}_{i}")
                rows.append(one_run(launcher, fn, job_args, work / "logs" / launcher, a.poll_s))
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(f"| {launcher} | {label} | {med['to_start']:.2f} | {med['run']:.2f} | {med['to_result']:.2f} | "
                  f"{med['total']:.2f} | {med['total'] - med['run']:.2f} |", flush=True)
    print(f"(medians of {a.repeats}; scenes and logs in {work})")


if __name__ == "__main__":
    main()
