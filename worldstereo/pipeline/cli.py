"""Shared CLI plumbing of the generation scripts: start from the scene's saved config, apply flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TypeVar

import tyro

from worldstereo.errors import InputError
from worldstereo.pipeline.config import GenerationConfig
from worldstereo.pipeline.driver import open_scene, saved_config
from worldstereo.scene import SceneDir

T = TypeVar("T")


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept `--intrinsics fx,fy,cx,cy` (the form image lists use) beside `--intrinsics fx fy cx cy`,
    and `--generator NAME` as the generator config's `--backend NAME`."""
    out: list[str] = []
    it = iter(range(len(argv)))
    for k in it:
        a = argv[k]
        if a == "--generator" or a.startswith("--generator="):
            out.append("--backend" + a[len("--generator"):])
        elif a.startswith("--intrinsics=") and "," in a:
            out += ["--intrinsics", *a.split("=", 1)[1].split(",")]
        elif a == "--intrinsics" and k + 1 < len(argv) and "," in argv[k + 1]:
            out += ["--intrinsics", *[v for v in argv[k + 1].split(",") if v]]
            next(it, None)
        else:
            out.append(a)
    return out


def _scene_arg(argv: list[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--scene", type=Path)
    known, _ = pre.parse_known_args(argv)
    return known.scene


def parse_with_saved_config(cls: type[T], argv: list[str] | None = None, require_scene: bool = True) -> T:
    """Parse `cls` (fields `scene: Path` and `gen: GenerationConfig`) whose `gen` defaults to the
    config saved in the scene named by --scene, so a rerun of one stage behaves like the pipeline did."""
    argv = normalize_argv(list(sys.argv[1:] if argv is None else argv))
    gen = GenerationConfig()
    root = _scene_arg(argv)
    if root is not None and "-h" not in argv and "--help" not in argv:
        scene = SceneDir(root)
        if scene.exists() or require_scene:
            gen = _fresh_where_given(saved_config(open_scene(root, create=False)), argv)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    default = cls(**{name: (gen if name == "gen" else f.default if f.default is not dataclasses.MISSING
                            else f.default_factory())  # type: ignore[misc]
                     for name, f in fields.items() if f.init and (f.default is not dataclasses.MISSING
                                                                  or f.default_factory is not dataclasses.MISSING)})
    args = tyro.cli(cls, args=argv, default=default, config=(tyro.conf.OmitArgPrefixes,))
    _check_explicit_frames(getattr(args, "gen", None), argv)
    return args


def _check_explicit_frames(gen: GenerationConfig | None, argv: list[str]) -> None:
    """An explicit --frames other than a diffusion backend's count is refused, even when it equals the
    geometric default (which `with_backend_defaults` cannot tell from an absent flag)."""
    from worldstereo.pipeline.config import DIFFUSION_BACKENDS, DIFFUSION_FRAMES

    if gen is None or gen.generator.backend not in DIFFUSION_BACKENDS or not _given(argv, "--frames"):
        return
    if gen.plan.planner.frames != DIFFUSION_FRAMES:
        raise InputError(None, f"--frames {gen.plan.planner.frames}: {gen.generator.backend} makes {DIFFUSION_FRAMES} "
                               f"frames per trajectory (leave --frames out or give {DIFFUSION_FRAMES})")


def _given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _fresh_where_given(gen: GenerationConfig, argv: list[str]) -> GenerationConfig:
    """A new --image / --example / --panorama / --pano-bank starts the input from defaults (the saved depth or camera belonged to
    the old image); a new --intrinsics replaces a saved --fov-deg and the other way round."""
    inp = gen.input
    if any(_given(argv, f) for f in ("--image", "--example", "--panorama", "--pano-bank")):
        inp = type(inp)()
    if _given(argv, "--intrinsics"):
        inp = dataclasses.replace(inp, fov_deg=None)
    if _given(argv, "--fov-deg"):
        inp = dataclasses.replace(inp, intrinsics=None)
    return dataclasses.replace(gen, input=inp)


def parse_stage_cli(cls: type[T], script: str, argv: list[str] | None = None) -> tuple[T, SceneDir]:
    """parse_with_saved_config for a single-stage script; input and plan flags are refused, since
    such a script only redoes its stage from what the scene already holds."""
    args = parse_with_saved_config(cls, argv)
    scene = open_scene(args.scene, create=False)  # type: ignore[attr-defined]
    saved = saved_config(scene)
    given = _changed_fields(saved.input, args.gen.input) + _changed_fields(saved.plan, args.gen.plan)  # type: ignore[attr-defined]
    if given:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise InputError(None, f"{flags}: not used by {script}, which redoes one stage from the scene's input and plan; "
                               "give them to run_pipeline.py --scene instead")
    return args, scene


def _changed_fields(a, b) -> list[str]:
    """Names of the (nested) dataclass fields whose values differ between a and b."""
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va):
            out += _changed_fields(va, vb)
        elif va != vb:
            out.append(f.name)
    return out
