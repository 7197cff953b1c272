"""The driver: runs prepare → plan → (generate, update_cache) per trajectory → export, resumably."""

from __future__ import annotations

import time
from pathlib import Path

from worldstereo.errors import InputError
from worldstereo.io.dataclass_json import from_dict, to_jsonable
from worldstereo.pipeline import stages as st
from worldstereo.pipeline.config import (STAGES, GenerationConfig, trajectory_names, validate, with_absolute_paths,
                                         with_backend_defaults)
from worldstereo.scene import LOCK_NAME, SceneDir


def default_scene_dir(cfg: GenerationConfig) -> Path:
    if cfg.input.example:
        return Path("scenes") / cfg.input.example
    if cfg.input.pano_bank is not None:  # the release's examples/panorama/<id>/pano_bank → scenes/<id>
        bank = Path(cfg.input.pano_bank)
        return Path("scenes") / (bank.parent.name if bank.name == "pano_bank" and bank.parent.name else bank.name)
    image = cfg.input.image or cfg.input.panorama
    if image is None:
        raise InputError(None, "no input: give --image PATH, --panorama PATH, --pano-bank DIR or --example motorcycle "
                               "(or --scene of an existing scene)")
    return Path("scenes") / Path(image).stem


def open_scene(root: str | Path, create: bool) -> SceneDir:
    """A scene folder we may write: ours (has scene.json) or new / empty; never a user's folder."""
    scene = SceneDir(root)
    root = scene.root
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder")
    if scene.exists():
        scene.load()  # schema check before any write
    elif not create:
        raise InputError(scene.manifest_path, "no scene here: run run_pipeline.py first (or check --scene)")
    elif root.exists() and any(p.name != LOCK_NAME for p in root.iterdir()):
        raise InputError(root, "exists, is not empty and has no scene.json: refusing to write into it (choose another --scene)")
    scene.check_writable()
    return scene


def saved_config(scene: SceneDir) -> GenerationConfig:
    """The config run_pipeline resolved for this scene (defaults when none was saved)."""
    data = scene.load().config
    if not data:
        return GenerationConfig()
    try:
        return from_dict(GenerationConfig, data)
    except (TypeError, ValueError) as e:
        raise InputError(scene.manifest_path, f"saved config is malformed ({e})")


def run_pipeline(scene: SceneDir, cfg: GenerationConfig, until: str | None = None, force: tuple[str, ...] = ()) -> dict:
    """Run every stage up to `until`; `force` reruns the named stages (what depends on them becomes
    stale and is rerun too). Every input is validated before the first write.

    until="generate" stops after the first trajectory's video: each later trajectory is generated
    from the cache that the previous one's update_cache produced.
    """
    if until is not None and until not in STAGES:
        raise InputError(None, f"--until must be one of {', '.join(STAGES)}")
    for f in force:
        if f not in STAGES:
            raise InputError(None, f"--force takes stage names ({', '.join(STAGES)}), got {f!r}")
    cfg = with_backend_defaults(with_absolute_paths(cfg))
    validate(cfg)
    view = st.load_input(cfg)
    st.load_custom_trajectories(cfg)
    t0 = time.perf_counter()
    last = STAGES.index(until) if until else len(STAGES) - 1
    with scene.lock():
        st.stage_prepare(scene, cfg, force="prepare" in force, view=view)
        if scene.load().config != to_jsonable(cfg):
            scene.update(config=to_jsonable(cfg))  # the single-stage scripts start from this config
        if last >= 1:
            st.stage_plan(scene, cfg, force="plan" in force)
        if last >= 2:
            for name in trajectory_names(cfg):
                st.stage_generate(scene, cfg, name, force="generate" in force)
                if last == 2:
                    break  # the next trajectory needs this one's cache update
                st.stage_update_cache(scene, cfg, name, force="update_cache" in force)
        if last >= 4:
            st.stage_export(scene, cfg, force="export" in force)
    return summarize(scene, time.perf_counter() - t0)


def summarize(scene: SceneDir, seconds: float) -> dict:
    """Print the one-screen summary and return it."""
    m = scene.load()
    lines = [f"scene {scene.root}  ({seconds:.1f}s)"]
    d = m.depth_source
    fallback = f"  ** FALLBACK: {d.note}" if d is not None and d.fallback else ""
    lines.append(f"  input   {list(m.working_size or [])}  camera: {m.camera_source}  depth: {d.kind if d else None}{fallback}")
    lines.append(f"  cache   input {m.cache_points.get('input', 0):,} points")
    for name in m.trajectory_order:
        g, u = m.stages.get(f"generate/{name}"), m.stages.get(f"update_cache/{name}")
        if g is None:
            continue
        stale = "" if scene.status(f"generate/{name}").current else "  (STALE)"
        line = f"  {name:<7} holes {100 * g.info.get('hole_fraction', 0):5.1f}%  refs {g.info.get('refs_used')}{stale}"
        if u is not None:
            a = u.info["alignment"]
            rm = a.get("median_rmse_after_m")
            line += (f"  cache → {a['points_after']:,}  Umeyama RMSE {rm if rm is None else f'{rm:.1e}'} m  "
                     f"scale {a['median_scale']:.4f}")
        lines.append(line)
        lines.append(f"          {scene.video(name)}  {scene.contact_sheet(name)}")
    if "export" in m.stages:
        stale = "" if scene.status("export").current else "  (STALE)"
        lines.append(f"  export  {scene.results_npz} ({m.stages['export'].info.get('frames')} frames){stale}")
    print("\n".join(lines), flush=True)
    return {"lines": lines, "seconds": seconds}
