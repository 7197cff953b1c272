"""Many images, one job each: run_pipeline.py --images list.txt through the launcher (local/slurm)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from worldstereo.errors import InputError
from worldstereo.launch import Job, JobOutcome, LaunchConfig, run_jobs
from worldstereo.pipeline.config import GenerationConfig
from worldstereo.scene import SceneDir


def parse_image_list(path: Path, base: GenerationConfig) -> list[GenerationConfig]:
    """One image per line: `photo.jpg [depth=d.npy] [intrinsics=fx,fy,cx,cy] [fov=60]`; `#` comments.
    Relative paths are relative to the list file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError(path, f"cannot read image list ({e.strerror or e})")
    except UnicodeDecodeError:
        raise InputError(path, "not a text file: --images takes a list with one image path per line")
    out = []
    for no, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        image, *opts = line.split()
        resolve = lambda p: p if Path(p).is_absolute() else Path(path).parent / p
        inp = dataclasses.replace(base.input, image=resolve(image), example=None)
        for opt in opts:
            key, _, value = opt.partition("=")
            try:
                if key == "depth":
                    inp = dataclasses.replace(inp, depth=resolve(value))
                elif key == "intrinsics":
                    intr = tuple(float(v) for v in value.split(","))
                    if len(intr) != 4:
                        raise ValueError
                    inp = dataclasses.replace(inp, intrinsics=intr, fov_deg=None)  # a line's camera replaces the default
                elif key == "fov":
                    inp = dataclasses.replace(inp, fov_deg=float(value), intrinsics=None)
                else:
                    raise ValueError
            except ValueError:
                raise InputError(path, f"line {no}: bad option {opt!r} (depth=…, intrinsics=fx,fy,cx,cy, fov=…)")
        out.append(dataclasses.replace(base, input=inp))
    if not out:
        raise InputError(path, "image list has no images")
    return out


def run_one(cfg: GenerationConfig, scene_root: Path) -> str:
    """One job: the whole pipeline for one image (module-level so submitit can pickle it)."""
    from worldstereo.pipeline.driver import open_scene, run_pipeline

    run_pipeline(open_scene(scene_root, create=True), cfg)
    return str(scene_root)


def run_batch(list_path: Path, base: GenerationConfig, scenes_root: Path, launch: LaunchConfig) -> list[JobOutcome]:
    """Submit one job per unfinished scene; finished scenes (export recorded) are skipped.

    Paths are made absolute first: a Slurm job may start in another working directory."""
    cfgs = parse_image_list(Path(list_path).resolve(), base)
    scenes_root = Path(scenes_root).resolve()
    launch = dataclasses.replace(launch, log_dir=Path(launch.log_dir).resolve())
    jobs = []
    for cfg in cfgs:
        root = scenes_root / Path(cfg.input.image).stem
        if any(j.name == root.name for j in jobs):
            raise InputError(list_path, f"two images would share the scene folder {root} (same file name)")
        done = lambda root=root: SceneDir(root).exists() and SceneDir(root).status("export").current
        jobs.append(Job(name=root.name, fn=run_one, args=(cfg, root), done=done))
    outcomes = run_jobs(jobs, launch)
    for o in outcomes:
        tail = f"  {o.error}  (logs: {o.log_dir})" if o.status == "failed" else ""
        print(f"[batch] {o.name:<24} {o.status:<8} {o.seconds:7.1f}s{tail}", flush=True)
    return outcomes
