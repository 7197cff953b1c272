"""Rerun one stage: align a generated trajectory to the 3D cache, merge it, remember keyframes."""

from __future__ import annotations

from dataclasses import dataclass

from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import TrajectoryStageArgs, parse_stage_cli
from worldstereo.pipeline.stages import stage_update_cache


@dataclass
class UpdateCache(TrajectoryStageArgs):
    """Update cache.ply and the memory bank with one generated trajectory."""


@cli_entry
def main() -> None:
    args, scene = parse_stage_cli(UpdateCache)
    stage_update_cache(scene, args.gen, args.trajectory, force=args.force)


if __name__ == "__main__":
    main()
