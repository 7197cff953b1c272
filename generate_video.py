"""Rerun one stage: generate the video of one trajectory from the cache and memory bank."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from configs.pipeline import TrajectoryStageArgs
from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import parse_stage_cli
from worldstereo.pipeline.stages import stage_generate, stage_import_video


@dataclass
class GenerateVideo(TrajectoryStageArgs):
    """Generate frames (+ depth, confidence, conditions) for one planned trajectory."""

    import_video: Optional[Path] = None
    """Take this trajectory's frames from a video made elsewhere (e.g. the official WorldStereo scripts)
    instead of running the generator: at least as many frames as planned cameras (more are resampled),
    the same aspect ratio (resized); recorded with backend "imported", depth estimated by update_cache."""


@cli_entry
def main() -> None:
    args, scene = parse_stage_cli(GenerateVideo, "generate_video.py")
    if args.import_video is not None:
        stage_import_video(scene, args.gen, args.trajectory, args.import_video, force=args.force)
    else:
        stage_generate(scene, args.gen, args.trajectory, force=args.force)


if __name__ == "__main__":
    main()
