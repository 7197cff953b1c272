"""Forward + backward time of the CPU Gaussian rasterizer (figures for BENCHMARKS.md).

    python -m benchmarks.bench_rasterizer                  # 20k Gaussians at 256×256, 3DGS and 2DGS
    python -m benchmarks.bench_rasterizer --large          # also 100k at 512×512 (time + peak memory)

Scene: random Gaussians in a 2×2×2 box 3 units in front of a 60° camera, scales log-uniform
0.005–0.03 units (footprints ~1–10 px at 256 px), opacities 0.1–0.9, SH degree 3 colours.
Reports the best of `--repeats` runs (the CPU is shared, timings are noisy).
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from worldstereo.render.gaussians import rasterize


def make_scene(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) + torch.tensor([0.0, 0.0, 3.0])
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.005), math.log(0.03), generator=g))
    return dict(means=means, quats=torch.randn(n, 4, generator=g), scales=scales,
                opacities=torch.rand(n, generator=g) * 0.8 + 0.1, colours=torch.randn(n, 16, 3, generator=g) * 0.3)


def bench(n: int, size: int, mode: str, repeats: int, tile: int) -> tuple[float, float]:
    s = make_scene(n)
    params = {k: v.clone().requires_grad_() for k, v in s.items()}
    f = 0.5 * size / math.tan(math.radians(30))
    K = torch.tensor([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    w2c = torch.eye(4)
    best_f = best_fb = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = rasterize(params["means"], params["quats"], params["scales"], params["opacities"], params["colours"],
                        w2c, K, size, size, mode=mode, sh_degree=3, tile=tile, backend="torch")
        loss = out.colour.sum() + out.depth.sum() + out.alpha.sum()
        if out.normals is not None:
            loss = loss + out.normals.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        best_f, best_fb = min(best_f, t1 - t0), min(best_fb, t2 - t0)
    return best_f, best_fb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=4)
    ap.add_argument("--large", action="store_true", help="also 100k Gaussians at 512×512")
    ap.add_argument("--modes", default="3dgs,2dgs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cases = [(20_000, 256)] + ([(100_000, 512)] if a.large else [])
    print(f"threads={a.threads} tile={a.tile} (best of {a.repeats})")
    for n, size in cases:
        for mode in a.modes.split(","):
            fwd, fb = bench(n, size, mode, a.repeats, a.tile)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
            print(f"{mode} N={n:>7,} {size}x{size}: forward {fwd:.3f}s, forward+backward {fb:.3f}s, "
                  f"peak RSS so far {peak:.2f} GB")


if __name__ == "__main__":
    main()
