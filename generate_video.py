"""Rerun one stage: generate the video of one trajectory from the cache and memory bank."""

from __future__ import annotations

from dataclasses import dataclass

from configs.pipeline import TrajectoryStageArgs
from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import parse_stage_cli
from worldstereo.pipeline.stages import stage_generate


@dataclass
class GenerateVideo(TrajectoryStageArgs):
    """Generate frames (+ depth, confidence, conditions) for one planned trajectory."""


@cli_entry
def main() -> None:
    args, scene = parse_stage_cli(GenerateVideo, "generate_video.py")
    stage_generate(scene, args.gen, args.trajectory, force=args.force)


if __name__ == "__main__":
    main()
