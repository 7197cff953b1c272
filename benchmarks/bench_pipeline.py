"""End-to-end generation figure: run_pipeline on the bundled motorcycle (defaults: 4 × 25 frames,
long side 512), wall time, peak memory, cache growth and Umeyama residuals per trajectory.

    python -m benchmarks.bench_pipeline [--scene /tmp/bench_moto] [extra run_pipeline flags]
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    scene = Path("/tmp/bench_moto")
    if "--scene" in args:
        i = args.index("--scene")
        scene = Path(args[i + 1])
        del args[i:i + 2]
    shutil.rmtree(scene, ignore_errors=True)
    repo = Path(__file__).resolve().parents[1]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(repo / "run_pipeline.py"), "--example", "motorcycle", "--scene", str(scene), *args],
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    meta = json.loads((scene / "scene.json").read_text())
    print(f"run_pipeline --example motorcycle {' '.join(args)}: {wall:.1f} s wall, peak RSS {peak_gb:.2f} GB")
    print(f"input cache: {meta['cache_points']['input']:,} points")
    print("| trajectory | generate s | update s | cache points after | growth | Umeyama RMSE median / max (m) | scale median | cache holes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in meta["trajectory_order"]:
        g, u = meta["stages"][f"generate/{name}"], meta["stages"][f"update_cache/{name}"]
        a = u["info"]["alignment"]
        print(f"| {name} | {g['seconds']:.1f} | {u['seconds']:.1f} | {a['points_after']:,} | "
              f"+{a['points_after'] - a['points_before']:,} | {a['median_rmse_after_m']:.2e} / {a['max_rmse_after_m']:.2e} | "
              f"{a['median_scale']:.4f} | {100 * g['info']['hole_fraction']:.1f}% |")


if __name__ == "__main__":
    main()
