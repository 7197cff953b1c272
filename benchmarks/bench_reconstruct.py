"""Synthetic inconsistency benchmark for reconstruct.py (figures for BENCHMARKS.md).

    python -m benchmarks.bench_reconstruct                       # 50 frames × 20k points, fast preset
    python -m benchmarks.bench_reconstruct --frames 20 --points 5000

Renders a worldstereo.bench synthetic scene along a path, distorts every frame but the first (scale drift
±10 %, smooth depth warps), runs the reconstruct stage on a results.npz-only folder and scores
align/canonical.ply and naive fusion (every frame unprojected with its given pose, same sampling and
voxel) against the true geometry: F-score at τ = 1 % of the median depth, Chamfer (mean of accuracy
and completeness), per-stage time and peak memory (ru_maxrss).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from configs.reconstruct import fast
from worldstereo.align.pipeline import run_reconstruct
from worldstereo.bench.builders import SyntheticConfig, make_inconsistent
from worldstereo.bench.scoring import naive_fusion, score
from worldstereo.bench.writers import write_results_folder
from worldstereo.io.ply import read_ply


@dataclass
class Args:
    frames: int = 50
    """Frames rendered and aligned."""
    points: int = 20000
    """Points per frame."""
    width: int = 192
    """Render width (192 × 144 = 27.6k pixels ≥ points)."""
    height: int = 144
    """Render height."""
    kind: str = "room"
    """Synthetic scene kind."""
    seed: int = 0
    """Scene / distortion seed."""
    flow_finest_scale: int | None = None
    """DIS flow's finest pyramid level (--icp.corr.flow-finest-scale); None: the default."""
    out: Path | None = None
    """Write the figures as JSON here too."""


def main(a: Args) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    data = make_inconsistent(SyntheticConfig(kind=a.kind, seed=a.seed, frames=a.frames, width=a.width, height=a.height))
    t_render = time.perf_counter() - t0
    cfg = fast()
    cfg.preprocess.frames, cfg.preprocess.stride, cfg.preprocess.points_per_frame = a.frames, 1, a.points
    if a.flow_finest_scale is not None:
        cfg.icp.corr.flow_finest_scale = a.flow_finest_scale
    with tempfile.TemporaryDirectory() as tmp:
        write_results_folder(tmp, data)
        t1 = time.perf_counter()
        out = run_reconstruct(Path(tmp), cfg.preprocess, cfg.icp, cfg.deform, cfg.global_opt, cfg.inverse, tensorboard=False)
        t_align = time.perf_counter() - t1
        ply = read_ply(Path(tmp) / "align" / "canonical.ply")
    rec = np.stack([ply["x"], ply["y"], ply["z"]], 1).astype(np.float64)
    tau = 0.01 * data.scale
    naive = score(naive_fusion(data.results, a.points, cfg.icp.voxel * data.scale), data.gt_xyz, tau)
    ours = score(rec, data.gt_xyz, tau)
    fig = {
        "frames": a.frames, "points_per_frame": a.points, "scene": f"{a.kind}/{a.seed}", "tau": tau,
        "naive": naive, "aligned": ours,
        "fscore_ratio": ours["fscore"] / max(naive["fscore"], 1e-12),
        "chamfer_ratio": naive["chamfer"] / max(ours["chamfer"], 1e-12),
        "seconds": {"render": t_render, "reconstruct_total": t_align, **out.metrics.seconds},
        "inverse_round_trip_p95": out.metrics.inverse_round_trip.p95_max,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    print(json.dumps(fig, indent=1))
    if a.out:
        a.out.write_text(json.dumps(fig, indent=1))
    return fig


if __name__ == "__main__":
    main(tyro.cli(Args, args=sys.argv[1:]))
