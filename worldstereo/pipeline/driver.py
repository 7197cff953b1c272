"""The driver: runs prepare → plan → (generate, update_cache) per trajectory → export, resumably."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from configs.pipeline import STAGES, GenerationConfig, from_dict
from worldstereo.errors import InputError
from worldstereo.pipeline import stages as st
from worldstereo.scene import SceneDir


def default_scene_dir(cfg: GenerationConfig) -> Path:
    if cfg.input.example:
        return Path("scenes") / cfg.input.example
    if cfg.input.image is None:
        raise InputError(None, "no input: give --image PATH or --example motorcycle")
    return Path("scenes") / Path(cfg.input.image).stem


def open_scene(root: Path, create: bool) -> SceneDir:
    """A scene folder we may write: ours (has scene.json) or new / empty; never a user's folder."""
    scene = SceneDir(root)
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder")
    if root.exists() and not scene.exists() and any(root.iterdir()):
        raise InputError(root, "exists, is not empty and has no scene.json: refusing to write into it (choose another --scene)")
    if scene.exists():
        scene.load()  # schema check before any write
    elif not create:
        raise InputError(scene.manifest_path, "no scene here: run run_pipeline.py first (or check --scene)")
    scene.check_writable()
    return scene


def saved_config(scene: SceneDir) -> GenerationConfig:
    """The config run_pipeline resolved for this scene (defaults when none was saved)."""
    data = scene.load().get("config")
    return from_dict(GenerationConfig, data) if data else GenerationConfig()


def run_pipeline(scene: SceneDir, cfg: GenerationConfig, until: str | None = None, force: tuple[str, ...] = ()) -> dict:
    """Run every stage up to `until`; `force` reruns the named stages (and what depends on them).

    until="generate" stops after the first trajectory's video: each later trajectory is generated
    from the cache that the previous one's update_cache produced.
    """
    if until is not None and until not in STAGES:
        raise InputError(None, f"--until must be one of {', '.join(STAGES)}")
    for f in force:
        if f not in STAGES:
            raise InputError(None, f"--force takes stage names ({', '.join(STAGES)}), got {f!r}")
    t0 = time.perf_counter()
    last = STAGES.index(until) if until else len(STAGES) - 1
    st.stage_prepare(scene, cfg, force="prepare" in force)
    if last >= 1:
        st.stage_plan(scene, cfg, force="plan" in force)
    if last >= 2:
        for name in st.trajectory_names(cfg):
            st.stage_generate(scene, cfg, name, force="generate" in force)
            if last == 2:
                break  # the next trajectory needs this one's cache update
            st.stage_update_cache(scene, cfg, name, force="update_cache" in force)
    if last >= 4:
        st.stage_export(scene, cfg, force="export" in force)
    return summarize(scene, time.perf_counter() - t0)


def summarize(scene: SceneDir, seconds: float) -> dict:
    """Print the one-screen summary and return it."""
    meta = scene.load()
    stages = meta["stages"]
    lines = [f"scene {scene.root}  ({seconds:.1f}s)"]
    d = meta.get("depth_source", {})
    lines.append(f"  input   {meta.get('working_size')}  camera: {meta.get('camera_source')}  depth: {d.get('kind')}"
                 f"{'  ** FALLBACK: ' + d.get('note', '') if d.get('fallback') else ''}")
    lines.append(f"  cache   input {meta.get('cache_points', {}).get('input', 0):,} points")
    for name in meta.get("trajectory_order", []):
        g, u = stages.get(f"generate/{name}"), stages.get(f"update_cache/{name}")
        if not g:
            continue
        line = f"  {name:<7} holes {100 * g.get('hole_fraction', 0):5.1f}%  refs {g.get('refs_used')}"
        if u:
            a = u["alignment"]
            rm = a.get("median_rmse_after_m")
            line += f"  cache → {a['points_after']:,}  Umeyama RMSE {rm if rm is None else f'{rm:.1e}'} m  scale {a['median_scale']:.4f}"
        lines.append(line)
        lines.append(f"          {scene.video(name)}  {scene.root / 'videos' / (name + '_sheet.png')}")
    if "export" in stages:
        lines.append(f"  export  {scene.results_npz} ({stages['export'].get('frames')} frames)")
    print("\n".join(lines), flush=True)
    return {"lines": lines, "seconds": seconds}
