"""Image → world: prepare, plan, generate and update the cache per trajectory, export. Resumable."""

from __future__ import annotations

import sys

from configs.pipeline import RunPipeline
from worldstereo.errors import cli_entry
from worldstereo.pipeline.cli import parse_with_saved_config
from worldstereo.pipeline.driver import default_scene_dir, open_scene, run_pipeline


@cli_entry
def main() -> None:
    args = parse_with_saved_config(RunPipeline, require_scene=False)
    if args.images is not None:
        from pathlib import Path

        from worldstereo.pipeline.batch import run_batch

        outcomes = run_batch(args.images, args.gen, args.scene or Path("scenes"), args.launch)
        sys.exit(1 if any(o.status == "failed" for o in outcomes) else 0)
    root = args.scene or default_scene_dir(args.gen)
    run_pipeline(open_scene(root, create=True), args.gen, args.until, args.force)


if __name__ == "__main__":
    main()
