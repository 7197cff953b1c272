"""Rerun one stage: generate the video of one trajectory from the cache and memory bank."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from configs.pipeline import GenerationConfig
from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import parse_stage_cli
from worldstereo.pipeline.stages import stage_generate


@dataclass
class GenerateVideo:
    """Generate frames (+ depth, confidence, conditions) for one planned trajectory."""

    scene: Path = Path("")
    """Scene folder written by run_pipeline.py."""
    trajectory: str = "orbit"
    """Name of a planned trajectory (trajectories/<name>.json)."""
    force: bool = False
    """Regenerate even when the outputs are up to date."""
    gen: GenerationConfig = field(default_factory=GenerationConfig)


@cli_entry
def main() -> None:
    args, scene = parse_stage_cli(GenerateVideo)
    stage_generate(scene, args.gen, args.trajectory, force=args.force)


if __name__ == "__main__":
    main()
