"""Rerun one stage: align a generated trajectory to the 3D cache, merge it, remember keyframes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from configs.pipeline import GenerationConfig
from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import parse_stage_cli
from worldstereo.pipeline.stages import stage_update_cache


@dataclass
class UpdateCache:
    """Update cache.ply and the memory bank with one generated trajectory."""

    scene: Path = Path("")
    """Scene folder written by run_pipeline.py."""
    trajectory: str = "orbit"
    """Name of a generated trajectory."""
    force: bool = False
    """Redo the update even when it is up to date."""
    gen: GenerationConfig = field(default_factory=GenerationConfig)


@cli_entry
def main() -> None:
    args, scene = parse_stage_cli(UpdateCache)
    stage_update_cache(scene, args.gen, args.trajectory, force=args.force)


if __name__ == "__main__":
    main()
