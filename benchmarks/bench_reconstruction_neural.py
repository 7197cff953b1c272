"""Chamfer of reconstruct_scene's `neural` and `hybrid` methods with and without the Gaussian fit (and of `mvs`)
on the analytic box room of tests/box_room.py (known walls), from an H.264 video + its trajectory.

    PYTHONPATH=. python benchmarks/bench_reconstruction_neural.py --frames 10 --width 96 --iterations 300

Accuracy = mean distance of mesh vertices to the true walls; completeness = mean distance of true
visible points (every 3rd pixel of every frame) to the mesh surface, capped at 1 m; Chamfer = their mean.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from box_room import box_distance, write_inputs  # noqa: E402

from worldstereo.reconstruction import ReconstructionConfig, reconstruct_scene  # noqa: E402


def true_points(gt: dict, width: int, height: int) -> np.ndarray:
    K, pts = gt["K"], []
    for c, d in zip(gt["c2w"], gt["depth"]):
        v, u = np.mgrid[0:height:3, 0:width:3]
        z = d[v, u]
        cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1).reshape(-1, 3)
        pts.append(cam @ c[:3, :3].T + c[:3, 3])
    return np.concatenate(pts)


def chamfer(mesh, gt_pts: np.ndarray) -> tuple[float, float]:
    w = np.array([(a, b, 6 - a - b) for a in range(7) for b in range(7 - a)]) / 6.0
    surface = np.einsum("sk,fkc->fsc", w, mesh.vertices[mesh.faces]).reshape(-1, 3)
    return float(box_distance(mesh.vertices).mean()), float(np.minimum(cKDTree(surface).query(gt_pts)[0], 1.0).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8192)
    a = ap.parse_args()
    height = a.width * 3 // 4
    with tempfile.TemporaryDirectory() as tmp:
        gt = write_inputs(Path(tmp), n=a.frames, width=a.width, height=height, f=70.0 * a.width / 96)
        pts = true_points(gt, a.width, height)
        runs = [("mvs", 0), ("neural", 0), ("neural", a.iterations), ("hybrid", 0), ("hybrid", a.iterations)]
        print("| method | Gaussian fit steps (cap) | stopped | accuracy cm | completeness cm | Chamfer cm | vertices | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for method, iters in runs:
            cfg = ReconstructionConfig(method=method, resolution=max(a.width, 64), texture_resolution=0,
                                       neural_iterations=iters, neural_batch_size=a.batch)
            t = time.perf_counter()
            s = reconstruct_scene(Path(tmp) / "video.mp4", Path(tmp) / "trajectory.json", config=cfg)
            sec = time.perf_counter() - t
            acc, comp = chamfer(s.mesh, pts)
            fit = s.metadata.get("gaussian_fit", {})
            steps = f"{fit['steps']} ({iters})" if fit else "–"
            print(f"| {method} | {steps} | {fit.get('stopped', '–')} | {100 * acc:.2f} | {100 * comp:.2f} | "
                  f"{50 * (acc + comp):.2f} | {len(s.mesh.vertices)} | {sec:.0f} |", flush=True)


if __name__ == "__main__":
    main()
