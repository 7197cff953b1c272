"""Panorama benchmark: the synthetic room (worldstereo/panorama/synthetic_room.py) with exact distance,
F-score at τ of the panorama-only baseline, the panoramic cache and the pipeline's result against
ground truth, and the timings (panorama → bank + cache; the whole pipeline).

    python -m benchmarks.bench_panorama                     # 2048×1024, pipeline at its defaults
    python -m benchmarks.bench_panorama --height 64 --pipeline-args="--pano-view-scale 0.125 --frames 3"

Rows (points scored against GT, all in the panorama's world frame):
  * panorama only: every pixel of the working panorama unprojected along its ray (no edge dropping,
    no density equalisation), i.e. what the input alone gives;
  * panoramic cache: cache/step_00.ply (edges dropped, poles thinned, at the bank views' pixel
    pitch: panorama.cache.cache_height);
  * pipeline cache: cache.ply after every trajectory's update_cache;
  * pipeline frames: results.npz's frames (bank views + generated frames) fused naively.
GT: the room's surfaces ray-cast from the centre and 8 points around it (what any camera of the
plan could see), voxel-merged at τ/2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from worldstereo.bench.scoring import naive_fusion, score
from worldstereo.geometry import voxel_downsample
from worldstereo.io.images import write_image
from worldstereo.io.results import load_results
from worldstereo.memory.cache import PointCache
from worldstereo.panorama import make_bank, points_from_panorama
from worldstereo.panorama.equirect import equirect_rays
from worldstereo.panorama.synthetic_room import Room, raycast, render_panorama

REPO = Path(__file__).resolve().parents[1]


def ground_truth(room: Room, tau: float, height: int = 512) -> np.ndarray:
    """Surface points seen from the centre and 8 points 0.6 m around it (x, z) and ±0.3 m (y)."""
    rays = equirect_rays(height, 2 * height).reshape(-1, 3)
    pts = []
    for o in [(0, 0, 0)] + [(sx * 0.6, sy * 0.3, sz * 0.6) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]:
        origin = np.broadcast_to(np.asarray(o, np.float64), rays.shape)
        t, _ = raycast(room, origin, rays)
        pts.append(origin + rays * t[:, None])
    gt, _ = voxel_downsample(np.concatenate(pts), tau / 2)
    return gt


def panorama_only(distance_m: np.ndarray) -> np.ndarray:
    H, W = distance_m.shape
    rays = equirect_rays(H, W).reshape(-1, 3)
    d = distance_m.reshape(-1).astype(np.float64)
    return rays[d > 0] * d[d > 0, None]


def time_bank_and_cache(room: Room, height: int, repeats: int = 3) -> float:
    """Best of `repeats`: make_bank (27 views with depth) + points_from_panorama at 2H × H."""
    rgb, dist = render_panorama(room, height)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        make_bank(rgb, dist)
        points_from_panorama(rgb, dist)
        best = min(best, time.perf_counter() - t0)
    return best


def run_pipeline(folder: Path, height: int, extra: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--panorama", "room.png", "--pano-depth", "room_d.npy",
           "--pano-width", str(2 * height), "--scene", "scene", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=1024, help="panorama height (width = 2 × height)")
    ap.add_argument("--tau", type=float, default=0.05, help="F-score threshold, metres")
    ap.add_argument("--pipeline-args", default="", help="extra run_pipeline.py flags (default: its defaults)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the scene (default: a temp folder)")
    args = ap.parse_args()
    room = Room()
    t_bank = time_bank_and_cache(room, args.height)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_pano_"))
    work.mkdir(parents=True, exist_ok=True)
    rgb, dist = render_panorama(room, args.height)
    write_image(work / "room.png", rgb)
    np.save(work / "room_d.npy", dist)
    t_pipe = run_pipeline(work, args.height, shlex.split(args.pipeline_args))
    gt = ground_truth(room, args.tau)
    scene = work / "scene"
    res = load_results(scene / "exports" / "npz" / "results.npz")
    rows = [("panorama only (baseline)", panorama_only(dist)),
            ("panoramic cache (step 0)", PointCache.load(scene / "cache" / "step_00.ply").xyz.astype(np.float64)),
            ("pipeline cache (cache.ply)", PointCache.load(scene / "cache.ply").xyz.astype(np.float64)),
            ("pipeline frames (naive fusion)", naive_fusion(res, 20000, args.tau / 2))]
    print(f"synthetic room, panorama {2 * args.height}×{args.height}, exact distance, τ = {args.tau} m, "
          f"GT {len(gt):,} points; pipeline flags: {args.pipeline_args or '(defaults)'}")
    print("| points | F | precision | recall | Chamfer (m) | N |")
    print("|---|---|---|---|---|---|")
    for name, pts in rows:
        s = score(pts, gt, args.tau)
        print(f"| {name} | {s['fscore']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | {s['chamfer']:.4f} | {len(pts):,} |")
    print(f"\n{2 * args.height}×{args.height} → 27-view bank + cache: {t_bank:.2f} s (best of 3)")
    print(f"whole pipeline ({len(res)} frames in results.npz): {t_pipe:.1f} s")
    print(f"stage seconds (scene.json): {stage_seconds(scene)}")


def stage_seconds(scene: Path) -> str:
    """Seconds per stage kind from scene.json's records (generate and update_cache summed over trajectories)."""
    import json

    total: dict[str, float] = {}
    for name, rec in json.loads((scene / "scene.json").read_text())["stages"].items():
        kind = name.split("/")[0]
        total[kind] = total.get(kind, 0.0) + rec["seconds"]
    return ", ".join(f"{k} {v:.1f}" for k, v in total.items())


if __name__ == "__main__":
    main()
