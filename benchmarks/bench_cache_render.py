"""Cache renderer speed: frames/s for N points at W×H (target ≥ 20 fps, 500k points, 512×384, 2 cores).

    python -m benchmarks.bench_cache_render [--points 500000] [--width 512] [--height 384]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from worldstereo.cameras import Camera, look_at
from worldstereo.memory.cache import PointCache
from worldstereo.render.points import render_points


def synthetic_cloud(n: int, width: int, height: int, seed: int = 0):
    """A cache like one from a depth map: points spread over the view at 2–5 m, footprint z/f."""
    rng = np.random.default_rng(seed)
    f = 0.8 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    z = rng.uniform(2, 5, n)
    u, v = rng.uniform(0, width, n), rng.uniform(0, height, n)
    xyz = np.stack([(u - K[0, 2]) / f * z, (v - K[1, 2]) / f * z, z], 1).astype(np.float32)
    cache = PointCache(xyz, rng.integers(0, 256, (n, 3), dtype=np.uint8), np.ones(n, np.float32),
                       (z / f).astype(np.float32), np.zeros(n, np.int16), np.zeros(n, np.int32))
    return cache, K


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=500_000)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--splat-scale", type=float, default=1.0, help="splat half-width / projected footprint")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache, K = synthetic_cloud(args.points, args.width, args.height)
    cams = [Camera(K, look_at(np.array([0.3 * np.cos(a), 0.3 * np.sin(a), 0.0]), np.array([0, 0, 3.5])),
                   args.width, args.height) for a in np.linspace(0, 2 * np.pi, args.frames)]
    ss = args.splat_scale
    for name, fn in (("render_points", lambda c: render_points(cache.xyz, cache.rgb, cache.size, c.K, c.w2c, c.width,
                                                               c.height, splat_scale=ss)),
                     ("render + crack closing", lambda c: cache.render(c, splat_scale=ss))):
        fn(cams[0])  # warm-up
        t0 = time.perf_counter()
        for c in cams:
            fn(c)
        dt = (time.perf_counter() - t0) / len(cams)
        print(f"{name:<24} splat_scale {ss}: {args.points:,} points {args.width}×{args.height}: {1000 * dt:6.1f} ms/frame = {1 / dt:5.1f} fps")


if __name__ == "__main__":
    main()
