"""Training figure for BENCHMARKS.md: steps/s and PSNR of the fast preset at long side 256.

    python -m benchmarks.bench_train_gs                          # scenes/motorcycle if present, else synthetic
    python -m benchmarks.bench_train_gs --scene scenes/my --renderer 2dgs --iterations 3000

The synthetic fallback (worldstereo.bench.writers.make_synthetic_scene): textured walls, floor and ball, 24 views of
256×192 on a 40° arc, ground truth rendered from ~20k Gaussians, init from a noisy half of them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from configs.train_gs import PRESETS
from worldstereo.bench.writers import make_synthetic_scene
from worldstereo.io.video import check_video_writer
from worldstereo.splat.trainer import train_gaussians
from worldstereo.scene import SceneDir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", type=Path, default=Path("scenes/motorcycle"))
    ap.add_argument("--synthetic-dir", type=Path, default=Path("/tmp/worldstereo_bench_gs"))
    ap.add_argument("--renderer", default="3dgs", choices=["3dgs", "2dgs"])
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "gsplat"])
    ap.add_argument("--no-render-trajectories", action="store_true", help="time training and evaluation only")
    a = ap.parse_args()
    if not a.no_render_trajectories:
        check_video_writer("--no-render-trajectories")  # before minutes of training, not after
    torch.set_num_threads(a.threads)
    if (a.scene / "exports/npz/results.npz").exists():
        scene, kind = SceneDir(a.scene), str(a.scene)
    else:
        scene = make_synthetic_scene(a.synthetic_dir, width=256, height=192, n_views=24, spacing=0.03)
        kind = "synthetic (worldstereo.bench, 256×192, 24 views)"
    cfg = PRESETS["fast"][1].train
    cfg.iterations, cfg.backend = a.iterations, a.backend
    cfg.output.render_trajectories = not a.no_render_trajectories
    t0 = time.perf_counter()
    res = train_gaussians(scene, a.renderer, cfg)
    dt = time.perf_counter() - t0
    m = res.metrics
    print(json.dumps({"scene": kind, "renderer": a.renderer, "device": "cuda" if torch.cuda.is_available() else
                      f"cpu ({a.threads} threads)", "iterations": res.steps, "seconds_total": round(dt, 1),
                      "iterations_per_s": round(res.steps / dt, 2), "gaussians": res.n_gaussians,
                      "psnr_train": round(m.train.psnr, 2),
                      "psnr_heldout": round(m.heldout.psnr if m.heldout else float("nan"), 2)}, indent=1))


if __name__ == "__main__":
    main()
