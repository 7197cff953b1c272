"""Procedural benchmark scenes with exact ground truth, and their manifest.

    python -m utils.make_synthetic --out bench/synth --scenes 8
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from worldstereo import __version__
from worldstereo.console import StageTimer, progress
from worldstereo.errors import InputError, cli_entry
from worldstereo.io.atomic import atomic_write_text
from worldstereo.bench.synthetic_scene import SCENE_KINDS
from worldstereo.bench.writers import ExportConfig, write_scene


@dataclass
class MakeSynthetic:
    """Render seeded synthetic scenes (input view, depth, K, GT points, path frames) + manifest.json."""

    out: Path = Path("bench/synth")
    """Output folder; the manifest is written to <out>/manifest.json."""
    scenes: int = 8
    """Number of scenes; kinds cycle through `kinds`, seeds count up from `seed`."""
    kinds: tuple[str, ...] = SCENE_KINDS
    """Scene kinds to cycle through (room, objects, outdoor)."""
    seed: int = 0
    """First seed."""
    export: ExportConfig = field(default_factory=ExportConfig)


def make(args: MakeSynthetic) -> Path:
    bad = [k for k in args.kinds if k not in SCENE_KINDS]
    if bad:
        raise InputError(None, f"unknown scene kind {bad[0]!r}; choose from {', '.join(SCENE_KINDS)}")
    timer = StageTimer("make_synthetic")
    entries = []
    for i in progress(range(args.scenes), "scenes", args.scenes):
        kind = args.kinds[i % len(args.kinds)]
        entries.append(write_scene(kind, args.seed + i, args.out, args.export))
    manifest = {"schema": 1, "generator": f"worldstereo.bench {__version__}", "scenes": entries}
    path = args.out / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=1))
    timer.done(str(path), f"{len(entries)} scenes")
    return path


@cli_entry
def main(args: MakeSynthetic) -> None:
    make(args)


if __name__ == "__main__":
    main(tyro.cli(MakeSynthetic))
