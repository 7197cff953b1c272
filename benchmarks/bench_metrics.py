"""Scoring speed: 1M reconstructed vs 1M GT points (target ≤ 10 s on 2 cores).

    python -m benchmarks.bench_metrics [--n 1000000] [--tau 0.01]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from worldstereo.geometry import Sim3
from worldstereo.metrics.pointcloud import align_to_gt, score_point_clouds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--tau", type=float, default=0.01, help="F threshold (scene is a 2×2×2 m room surface)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    # points on the 6 faces of a 2 m box (a room), GT and a noisy reconstruction of it
    face = rng.integers(0, 6, a.n * 2)
    pts = rng.uniform(-1, 1, (a.n * 2, 3))
    pts[np.arange(len(pts)), face // 2] = np.where(face % 2 == 0, -1.0, 1.0)
    gt, rec = pts[: a.n], pts[a.n:] + rng.normal(scale=0.3 * a.tau, size=(a.n, 3))
    t0 = time.perf_counter()
    s = score_point_clouds(rec, gt, a.tau)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    align_to_gt(rec, gt, init=Sim3.identity(), max_dist=3 * a.tau)
    t_icp = time.perf_counter() - t0
    print(f"score {a.n:,} vs {a.n:,} points (tau {a.tau}): {t_score:.2f} s  "
          f"(F {s.fscore:.3f}, {s.n_rec:,} / {s.n_gt:,} points after tau/2 voxels)")
    print(f"ICP with scale (≤200k sampled): {t_icp:.2f} s")


if __name__ == "__main__":
    main()
