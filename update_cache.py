"""Rerun one stage: align a generated trajectory to the 3D cache, merge it, remember keyframes."""

from __future__ import annotations

from dataclasses import dataclass

from configs.pipeline import TrajectoryStageArgs
from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import parse_stage_cli
from worldstereo.pipeline.stages import stage_update_cache


@dataclass
class UpdateCache(TrajectoryStageArgs):
    """Update cache.ply and the memory bank with one generated trajectory."""


@cli_entry
def main() -> None:
    args, scene = parse_stage_cli(UpdateCache, "update_cache.py")
    stage_update_cache(scene, args.gen, args.trajectory, force=args.force)


if __name__ == "__main__":
    main()
