"""Run and score every scene of a manifest, or score one finished scene; print and save the table.

    python eval_benchmark.py --manifest bench/synth/manifest.json
    python eval_benchmark.py --manifest m.json --launcher slurm --partition gpu --gpus-per-job 1
    python eval_benchmark.py --scene scenes/my --gt-points gt.ply

One job per scene (worldstereo.launch); each writes <out>/scores/<scene>.json, so a rerun only
runs unfinished scenes. The table (markdown on screen, benchmark.json / .csv in <out>) has one
row per scene and method, the mean rows last, and the command and versions that produced it.
Exit code 0 when every scene ran and was scored, 1 when a scene failed (listed under the table),
2 on bad input (nothing written).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import tyro

from configs.eval import EvalConfig
from worldstereo.bench.batch import BenchResult, check_output_folder, job_launch, run_benchmark
from worldstereo.bench.config import BenchSetup
from worldstereo.bench.manifest import ManifestEntry, read_manifest, single_scene_entry
from worldstereo.bench.tables import provenance, write_tables
from worldstereo.console import info
from worldstereo.errors import InputError, cli_entry

REPO = Path(__file__).resolve().parent


def load_entries(cfg: EvalConfig) -> list[ManifestEntry]:
    """Manifest entries with absolute paths, or the single --scene entry."""
    if cfg.scene is not None:
        return [single_scene_entry(cfg.scene, cfg.gt_points)]
    if cfg.manifest is None:
        raise InputError(None, "give --manifest M.json, or --scene DIR --gt-points GT.ply")
    return read_manifest(cfg.manifest, cfg.out)


def evaluate(cfg: EvalConfig) -> BenchResult:
    """Check the inputs, score every scene, write and print the table."""
    check_output_folder(cfg.out)
    entries = load_entries(cfg)
    launch = job_launch(cfg.launch, cfg.out)
    result = run_benchmark(entries, BenchSetup(cfg.score, cfg.run, cfg.methods, REPO), cfg.out, launch, cfg.force)
    config = {**asdict(cfg), "launch": asdict(launch)}
    print(write_tables(result.rows, result.failed, cfg.out, config, provenance(REPO, sys.argv)))
    info(f"[eval_benchmark] table → {cfg.out / 'benchmark.json'}, {cfg.out / 'benchmark.csv'}")
    return result


@cli_entry
def main(cfg: EvalConfig) -> None:
    if evaluate(cfg).failed:
        sys.exit(1)


if __name__ == "__main__":
    main(tyro.cli(EvalConfig, config=(tyro.conf.OmitArgPrefixes,)))
