"""Shared CLI plumbing for single-stage scripts: start from the scene's saved config, apply flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable, TypeVar

import tyro

from configs.pipeline import GenerationConfig
from worldstereo.pipeline.driver import open_scene, saved_config
from worldstereo.scene import SceneDir

T = TypeVar("T")


def parse_stage_cli(cls: type[T], argv: list[str] | None = None) -> tuple[T, SceneDir]:
    """Parse `cls` (with fields `scene: Path` and `gen: GenerationConfig`) whose defaults come from
    the config saved in the scene named by --scene, so a rerun of one stage matches the pipeline."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--scene", type=Path)
    known, _ = pre.parse_known_args(argv)
    gen = GenerationConfig()
    scene = None
    if known.scene is not None and "-h" not in argv and "--help" not in argv:
        scene = open_scene(known.scene, create=False)
        gen = saved_config(scene)
    default = cls(**{f.name: (gen if f.name == "gen" else f.default) for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING or f.name == "gen"})  # type: ignore[call-arg]
    args = tyro.cli(cls, args=argv, default=default, config=(tyro.conf.OmitArgPrefixes,))
    return args, scene or open_scene(args.scene, create=False)  # type: ignore[attr-defined]


@dataclasses.dataclass
class TrajectoryStageArgs:
    """Arguments shared by the single-trajectory stage scripts."""

    scene: Path = Path("")
    """Scene folder written by run_pipeline.py."""
    trajectory: str = "orbit"
    """Name of a planned trajectory (trajectories/<name>.json)."""
    force: bool = False
    """Redo the stage even when its outputs are up to date."""
    gen: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)
