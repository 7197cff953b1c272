"""Image → world: prepare, plan, generate and update the cache per trajectory, export. Resumable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import tyro

from configs.pipeline import GenerationConfig
from worldstereo.errors import cli_entry
from worldstereo.pipeline.driver import default_scene_dir, open_scene, run_pipeline

Stage = Literal["prepare", "plan", "generate", "update_cache", "export"]


@dataclass
class RunPipeline:
    """Turn one photo into a consistent 3D world (videos, 3D cache, memory bank, results.npz)."""

    gen: GenerationConfig = field(default_factory=GenerationConfig)
    scene: Optional[Path] = None
    """Scene folder (default: scenes/<image name>, or scenes/<example>)."""
    until: Optional[Stage] = None
    """Stop after this stage (generate: after the first trajectory's video)."""
    force: tuple[Stage, ...] = ()
    """Rerun these stages even when their outputs are up to date."""


@cli_entry
def main(args: RunPipeline) -> None:
    root = args.scene or default_scene_dir(args.gen)
    run_pipeline(open_scene(root, create=True), args.gen, args.until, args.force)


if __name__ == "__main__":
    main(tyro.cli(RunPipeline, config=(tyro.conf.OmitArgPrefixes,)))
