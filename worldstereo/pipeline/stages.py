"""The generation stages as functions of (scene folder, config): each skips work that is current,
writes atomically under the scene's lock, and records what it consumed in scene.json.

Dependencies (each arrow is a consumed run id, see worldstereo/scene.py):

    prepare → plan → generate/<t1> → update_cache/<t1> → generate/<t2> → … → export
    prepare ─────────↗ (the cache before t1)    update_cache/<t1> ↗ (the cache before t2)

The cache after each step is kept as cache/step_<k>.ply, so redoing trajectory k starts from
exactly the cache and bank it started from the first time (bit-identical reruns).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from worldstereo.cameras import Camera, Trajectory, load_trajectory, plan_trajectory, save_trajectory, scale_intrinsics
from worldstereo.console import StageTimer, progress
from worldstereo.errors import InputError
from worldstereo.generate.base import GenerationRequest
from worldstereo.generate.registry import make_generator
from worldstereo.io.atomic import atomic_copy, atomic_dir, atomic_write_text
from worldstereo.io.dataclass_json import to_jsonable
from worldstereo.io.images import read_image, write_image
from worldstereo.io.results import FrameResults, save_results
from worldstereo.io.video import write_video
from worldstereo.memory.bank import MemoryBank
from worldstereo.memory.cache import PointCache, align_frame_to_cache, fuse_frame
from worldstereo.memory.retrieval import retrieve
from worldstereo.pipeline.config import GenerationConfig, custom_trajectory_name, trajectory_names
from worldstereo.pipeline.prepare import InputView, load_input_view, write_prepared
from worldstereo.pipeline.report import contact_sheet
from worldstereo.scene import SceneDir, SceneManifest, config_hash, file_digest

# --------------------------------------------------------------------------- keys and inputs


def prepare_key(cfg: GenerationConfig, view: InputView) -> str:
    """Config without the input paths (a file moved or named relatively is the same input) + content."""
    inp = dataclasses.replace(cfg.input, image=None, depth=None, depth_model=None)
    return config_hash("prepare", inp, cfg.cache.edge_rel_thresh, cfg.cache.voxel_scale, view.source_id)


def plan_key(cfg: GenerationConfig) -> str:
    custom = [(custom_trajectory_name(p), file_digest(p)) for p in cfg.plan.custom]
    return config_hash("plan", list(cfg.plan.order), cfg.plan.planner, custom)


def generate_key(cfg: GenerationConfig, name: str) -> str:
    return config_hash("generate", name, cfg.generator, cfg.memory.retrieval)


def update_key(cfg: GenerationConfig, name: str) -> str:
    return config_hash("update_cache", name, cfg.cache, cfg.memory.keyframes)


def _step_of(scene: SceneDir, name: str) -> int:
    order = scene.load().trajectory_order
    if name not in order:
        raise InputError(scene.manifest_path, f"unknown trajectory '{name}' (planned: {', '.join(order) or 'none'})")
    return order.index(name) + 1


def _state_before(scene: SceneDir, step: int) -> str:
    """The stage whose cache a plan step starts from: prepare for the first, else the previous update."""
    return "prepare" if step == 1 else f"update_cache/{scene.load().trajectory_order[step - 2]}"


def _consume(scene: SceneDir, stages: list[str], what: Path) -> dict[str, str]:
    """Run ids of the upstream stages about to be read; a stale or missing one is a one-line error."""
    return {s: scene.require_current(s, what).run for s in stages}


def _input_view(scene: SceneDir) -> tuple[Camera, np.ndarray]:
    """The input camera and its observed depth: free space that synthesised points may not fill."""
    m = scene.load()
    W, H = m.working_size
    return Camera(np.asarray(m.K), np.eye(4), W, H), np.load(scene.input_depth)


# --------------------------------------------------------------------------- prepare / plan


def stage_prepare(scene: SceneDir, cfg: GenerationConfig, force: bool = False, view: InputView | None = None) -> None:
    timer = StageTimer("prepare")
    view = view or load_input_view(cfg.input)  # reads and validates before anything is written
    key = prepare_key(cfg, view)
    if not force and scene.is_current("prepare", key):
        timer.skipped(str(scene.root))
        return
    with scene.lock():
        if not scene.exists():  # first: an interrupted first run leaves a folder the next run knows as ours
            scene.save(SceneManifest(config=to_jsonable(cfg)))
        fields = write_prepared(scene, view, cfg.cache)
        scene.update(**fields, config=to_jsonable(cfg))
        scene.record_stage("prepare", key, [scene.input_image, scene.input_depth, scene.cache_step(0),
                                            scene.bank_index], timer.seconds)
    d = fields["depth_source"]
    W, H = fields["working_size"]
    timer.done(str(scene.root), f"{W}×{H}, depth: {d.kind}{' (FALLBACK)' if d.fallback else ''}, "
               f"cache {fields['cache_points']['input']:,} points")


def load_custom_trajectories(cfg: GenerationConfig) -> list[Trajectory]:
    """The --custom files, read and validated (named after their file, see custom_trajectory_name)."""
    out = []
    for path in cfg.plan.custom:
        t = load_trajectory(path)
        t.name = custom_trajectory_name(path)
        out.append(t)
    return out


def stage_plan(scene: SceneDir, cfg: GenerationConfig, force: bool = False) -> None:
    timer = StageTimer("plan")
    key = plan_key(cfg)
    if not force and scene.is_current("plan", key):
        timer.skipped(str(scene.root / "trajectories"))
        return
    custom = load_custom_trajectories(cfg)
    with scene.lock():
        inputs = _consume(scene, ["prepare"], scene.manifest_path)
        m = scene.load()
        W, H = m.working_size
        trajs = [plan_trajectory(n, np.asarray(m.K), W, H, m.pivot_depth_m, cfg.plan.planner) for n in cfg.plan.order]
        for t in custom:
            if (t.width, t.height) != (W, H):  # the same cameras at the working size
                t = Trajectory([Camera(scale_intrinsics(c.K, W / c.width, H / c.height), c.c2w, W, H)
                                for c in t.cameras], t.name)
            trajs.append(t)
        for t in trajs:
            save_trajectory(t, scene.trajectory(t.name))
        names = trajectory_names(cfg)
        scene.update(trajectory_order=names)
        scene.record_stage("plan", key, [scene.trajectory(n) for n in names], timer.seconds, inputs=inputs)
    timer.done(str(scene.root / "trajectories"), f"{', '.join(names)} × {len(trajs[0])} frames")


# --------------------------------------------------------------------------- per trajectory


def stage_generate(scene: SceneDir, cfg: GenerationConfig, name: str, force: bool = False) -> None:
    """Render the cache along trajectory `name`, retrieve references, and run the generator."""
    timer = StageTimer(f"generate/{name}")
    step = _step_of(scene, name)
    key = generate_key(cfg, name)
    stage = f"generate/{name}"
    if not force and scene.is_current(stage, key):
        timer.skipped(str(scene.video(name)))
        return
    with scene.lock():
        inputs = _consume(scene, ["plan", _state_before(scene, step)], scene.trajectory(name))
        traj = load_trajectory(scene.trajectory(name))
        cache = PointCache.load(scene.cache_step(step - 1))
        bank = MemoryBank(scene.memory_bank)
        bank.entries = bank.visible_before(step)
        pivot = scene.load().pivot_depth_m
        refs = retrieve(traj.cameras, bank.entries, pivot, cfg.memory.retrieval)
        cond = [cache.render(c, cfg.generator.geometric.splat_scale)
                for c in progress(traj.cameras, f"{name}: cache render")]
        cond_rgb = np.stack([r.rgb for r in cond])
        cond_hole = np.stack([r.hole for r in cond])
        req = GenerationRequest(traj, cache, bank, refs, step, pivot, cond_rgb, cond_hole, observed=_input_view(scene))
        out = make_generator(cfg.generator.backend, cfg.generator.geometric).generate(req, progress_desc=f"{name}: generate")
        _write_generated(scene, name, cfg, out, cond_rgb, cond_hole, refs)
        holes = float(cond_hole.mean())
        scene.record_stage(stage, key, [scene.video(name), scene.frames(name), scene.conditions(name),
                                        scene.contact_sheet(name)], timer.seconds, inputs=inputs,
                           backend=out.backend, hole_fraction=round(holes, 4), refs_used=sorted({r.ref_id for r in refs}))
    timer.done(str(scene.video(name)), f"{len(traj)} frames, cache holes {100 * holes:.1f}%, backend {out.backend}")


def _write_generated(scene: SceneDir, name: str, cfg: GenerationConfig, out, cond_rgb: np.ndarray,
                     cond_hole: np.ndarray, refs: list) -> None:
    with atomic_dir(scene.conditions(name)) as tmp:
        write_video(tmp / "render.mp4", cond_rgb, cfg.generator.fps)
        write_video(tmp / "mask.mp4", (cond_hole * 255).astype(np.uint8), cfg.generator.fps)
        (tmp / "refs.json").write_text(json.dumps([dataclasses.asdict(r) for r in refs], indent=1))
    with atomic_dir(scene.frames(name)) as tmp:
        for j, img in enumerate(out.rgb):
            write_image(SceneDir.frame_png(tmp, j), img)
        np.save(tmp / "depth.npy", out.depth.astype(np.float32))
        np.save(tmp / "conf.npy", out.conf.astype(np.float32))
    write_video(scene.video(name), out.rgb, cfg.generator.fps)
    write_image(scene.contact_sheet(name), contact_sheet(out.rgb, out.depth, cond_hole))


def stage_update_cache(scene: SceneDir, cfg: GenerationConfig, name: str, force: bool = False) -> None:
    """Align each generated frame's depth to the cache (robust Sim(3)), fuse what agrees into the
    point it re-observes, merge what is new by voxel; then remember keyframes in the bank."""
    timer = StageTimer(f"update_cache/{name}")
    step = _step_of(scene, name)
    key = update_key(cfg, name)
    stage = f"update_cache/{name}"
    if not force and scene.is_current(stage, key):
        timer.skipped(str(scene.cache_ply))
        return
    with scene.lock():
        inputs = _consume(scene, [f"generate/{name}", _state_before(scene, step)], scene.frames(name))
        traj = load_trajectory(scene.trajectory(name))
        cache = PointCache.load(scene.cache_step(step - 1))
        n_before = len(cache)
        cache, aligns, rgbs, depth = _merge_frames(scene, cfg, name, traj, cache, step)
        bank = MemoryBank(scene.memory_bank)
        bank.drop_from_step(step)
        added = [bank.add(rgbs[j], depth[j], traj.cameras[j], source=name, step=step, frame=int(j))
                 for j in np.unique(np.round(np.linspace(0, len(traj) - 1, cfg.memory.keyframes)).astype(int))]
        cache.save(scene.cache_step(step))
        atomic_copy(scene.cache_step(step), scene.cache_ply)
        bank.save()
        summary = _alignment_summary(aligns, n_before, len(cache))
        outputs = [scene.cache_step(step)] + [scene.memory_bank / e.image for e in added]
        scene.record_stage(stage, key, outputs, timer.seconds, inputs=inputs, alignment=summary)
    timer.done(str(scene.cache_ply), f"cache {n_before:,} → {len(cache):,} points, Umeyama RMSE median "
               f"{summary['median_rmse_after_m'] or 0:.2e} m")


def _merge_frames(scene: SceneDir, cfg: GenerationConfig, name: str, traj: Trajectory, cache: PointCache, step: int):
    """Align and fuse every frame of one trajectory into the cache, in frame order."""
    frames_dir = scene.frames(name)
    depth = np.load(frames_dir / "depth.npy")
    conf = np.load(frames_dir / "conf.npy")
    observed = _input_view(scene)
    voxel = scene.load().voxel_m
    aligns, rgbs = [], []
    for j, cam in enumerate(progress(traj.cameras, f"{name}: update cache")):
        rgb = read_image(SceneDir.frame_png(frames_dir, j))
        rgbs.append(rgb)
        render = cache.render(cam)
        T, rec = align_frame_to_cache(depth[j], cam, render, j, cfg.cache.min_overlap_px, cfg.cache.max_pairs)
        aligns.append(rec)
        cache = fuse_frame(cache, rgb, depth[j], conf[j], cam, render, T, step, j, voxel, cfg.cache.max_conf,
                           observed=observed)
    return cache, aligns, rgbs, depth


def _alignment_summary(aligns: list, n_before: int, n_after: int) -> dict:
    rmse = [a.rmse_after for a in aligns if np.isfinite(a.rmse_after)]
    return {
        "points_before": n_before, "points_after": n_after,
        "median_rmse_after_m": float(np.median(rmse)) if rmse else None,
        "max_rmse_after_m": float(np.max(rmse)) if rmse else None,
        "median_scale": float(np.median([a.scale for a in aligns])),
        "frames": [dataclasses.asdict(a) for a in aligns],
    }


# --------------------------------------------------------------------------- export


def stage_export(scene: SceneDir, cfg: GenerationConfig, force: bool = False) -> None:
    """exports/npz/results.npz: the input view (frame 0) and every generated frame, in plan order;
    world.ply: the cache's trusted points (memory.cache.world_points)."""
    from worldstereo.memory.cache import world_points  # imported here: this helper's edits stay inside export

    timer = StageTimer("export")
    order = scene.load().trajectory_order
    key = config_hash("export", order)
    if not force and scene.is_current("export", key):
        timer.skipped(str(scene.results_npz))
        return
    with scene.lock():
        inputs = _consume(scene, [f"update_cache/{n}" for n in order], scene.results_npz)
        res, index = _gather_frames(scene, order)
        save_results(scene.results_npz, res)
        atomic_write_text(scene.frames_json, json.dumps(index))
        world = world_points(PointCache.load(scene.cache_ply), observed=_input_view(scene))
        world.save(scene.world_ply)
        scene.record_stage("export", key, [scene.results_npz, scene.frames_json, scene.world_ply], timer.seconds,
                           inputs=inputs, frames=len(res), world_points=len(world))
    timer.done(str(scene.results_npz), f"{len(res)} frames")


def _gather_frames(scene: SceneDir, order: list[str]) -> tuple[FrameResults, list[dict]]:
    m = scene.load()
    images = [read_image(scene.input_image)]
    depths = [np.load(scene.input_depth)]
    confs = [(depths[0] > 0).astype(np.float32)]
    w2cs = [np.eye(4)[:3]]
    Ks = [np.asarray(m.K, np.float32)]
    index = [{"trajectory": "input", "frame": 0}]
    for name in order:
        traj = load_trajectory(scene.trajectory(name))
        d = np.load(scene.frames(name) / "depth.npy")
        c = np.load(scene.frames(name) / "conf.npy")
        for j, cam in enumerate(traj.cameras):
            images.append(read_image(SceneDir.frame_png(scene.frames(name), j)))
            depths.append(d[j])
            confs.append(c[j])
            w2cs.append(cam.w2c[:3])
            Ks.append(cam.K)
            index.append({"trajectory": name, "frame": j})
    res = FrameResults(np.stack(depths).astype(np.float32), np.stack(confs).astype(np.float32),
                       np.stack(w2cs).astype(np.float32), np.stack(Ks).astype(np.float32), np.stack(images))
    return res, index
