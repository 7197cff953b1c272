"""Image → world: prepare, plan, generate and update the cache per trajectory, export. Resumable."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import tyro

from configs.pipeline import GenerationConfig
from worldstereo.errors import cli_entry
from worldstereo.launch import LaunchConfig
from worldstereo.pipeline.driver import default_scene_dir, open_scene, run_pipeline

Stage = Literal["prepare", "plan", "generate", "update_cache", "export"]


@dataclass
class RunPipeline:
    """Turn one photo into a consistent 3D world (videos, 3D cache, memory bank, results.npz)."""

    gen: GenerationConfig = field(default_factory=GenerationConfig)
    scene: Optional[Path] = None
    """Scene folder (default: scenes/<image name>, or scenes/<example>). With --images: the parent
    folder of one scene per image (default: scenes)."""
    until: Optional[Stage] = None
    """Stop after this stage (generate: after the first trajectory's video)."""
    force: tuple[Stage, ...] = ()
    """Rerun these stages even when their outputs are up to date."""
    images: Optional[Path] = None
    """A text file with one image per line (`photo.jpg [depth=d.npy] [intrinsics=fx,fy,cx,cy] [fov=60]`):
    one job per image through the launcher; a rerun submits only unfinished scenes."""
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@cli_entry
def main(args: RunPipeline) -> None:
    if args.images is not None:
        from worldstereo.pipeline.batch import run_batch

        outcomes = run_batch(args.images, args.gen, args.scene or Path("scenes"), args.launch)
        sys.exit(1 if any(o.status == "failed" for o in outcomes) else 0)
    root = args.scene or default_scene_dir(args.gen)
    run_pipeline(open_scene(root, create=True), args.gen, args.until, args.force)


if __name__ == "__main__":
    main(tyro.cli(RunPipeline, config=(tyro.conf.OmitArgPrefixes,)))
