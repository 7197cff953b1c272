"""The generation stages as functions of (scene folder, config): each skips work whose inputs and
config are unchanged, writes atomically, and records itself in scene.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from configs.pipeline import GenerationConfig
from worldstereo.cameras import Camera, Trajectory, load_trajectory, plan_trajectory, save_trajectory, scale_intrinsics
from worldstereo.console import StageTimer, progress
from worldstereo.errors import InputError
from worldstereo.generate.base import GenerationRequest
from worldstereo.generate.registry import make_generator
from worldstereo.io.atomic import atomic_dir, atomic_write_text
from worldstereo.io.images import read_image, write_image
from worldstereo.io.results import FrameResults, save_results
from worldstereo.io.video import write_video
from worldstereo.memory.bank import MemoryBank
from worldstereo.memory.cache import PointCache, align_frame_to_cache, fuse_frame
from worldstereo.memory.retrieval import retrieve
from worldstereo.pipeline.prepare import load_input_view, write_prepared
from worldstereo.pipeline.report import contact_sheet
from worldstereo.scene import SceneDir, config_hash


def _hash_of(scene: SceneDir, stage: str) -> str:
    rec = scene.stage_record(stage)
    if rec is None:
        raise InputError(scene.manifest_path, f"stage '{stage}' has not run yet: run run_pipeline.py (or that stage) first")
    return rec["config_hash"]


# --------------------------------------------------------------------------- prepare / plan


def stage_prepare(scene: SceneDir, cfg: GenerationConfig, force: bool = False) -> str:
    timer = StageTimer("prepare")
    view = load_input_view(cfg.input)  # reads and validates before anything is written
    for path in cfg.plan.custom:  # bad custom trajectories fail now, not after prepare wrote the scene
        load_trajectory(path)
    chash = config_hash("prepare", cfg.input, cfg.cache.edge_rel_thresh, cfg.cache.voxel_scale, view.source_id)
    if not force and scene.stage_done("prepare", chash):
        timer.skipped(str(scene.root))
        return chash
    fields = write_prepared(scene, view, cfg.cache)
    data = scene.load_or_new()
    data.update(fields)
    data["config"] = dataclasses.asdict(cfg)
    scene.save(data)
    scene.invalidate("plan")
    scene.record_stage("prepare", chash, [scene.input_image, scene.input_depth, scene.cache_ply,
                                          scene.memory_bank / "index.json"], timer.seconds)
    d = fields["depth_source"]
    timer.done(str(scene.root), f"{fields['working_size'][0]}×{fields['working_size'][1]}, depth: {d['kind']}"
               f"{' (FALLBACK)' if d['fallback'] else ''}, cache {fields['cache_points']['input']:,} points")
    return chash


def trajectory_names(cfg: GenerationConfig) -> list[str]:
    return list(cfg.plan.order) + [Path(p).stem for p in cfg.plan.custom]


def stage_plan(scene: SceneDir, cfg: GenerationConfig, force: bool = False) -> str:
    timer = StageTimer("plan")
    chash = config_hash("plan", _hash_of(scene, "prepare"), cfg.plan)
    if not force and scene.stage_done("plan", chash):
        timer.skipped(str(scene.root / "trajectories"))
        return chash
    meta = scene.load()
    W, H = meta["working_size"]
    K = np.asarray(meta["K"])
    names = trajectory_names(cfg)
    if len(set(names)) != len(names):
        raise InputError(None, f"trajectory names must be unique, got {names}")
    trajs = [plan_trajectory(n, K, W, H, meta["pivot_depth_m"], cfg.plan.planner) for n in cfg.plan.order]
    for path in cfg.plan.custom:
        t = load_trajectory(path)
        if (t.width, t.height) != (W, H):  # same cameras at the working size
            t = Trajectory([Camera(scale_intrinsics(c.K, W / c.width, H / c.height), c.c2w, W, H) for c in t.cameras],
                           Path(path).stem)
        t.name = Path(path).stem
        trajs.append(t)
    for t in trajs:
        save_trajectory(t, scene.trajectory(t.name))
    scene.update(trajectory_order=names)
    scene.record_stage("plan", chash, [scene.trajectory(n) for n in names], timer.seconds)
    timer.done(str(scene.root / "trajectories"), f"{', '.join(names)} × {len(trajs[0])} frames")
    return chash


# --------------------------------------------------------------------------- per trajectory


def _step_of(scene: SceneDir, name: str) -> int:
    order = scene.load().get("trajectory_order", [])
    if name not in order:
        raise InputError(scene.manifest_path, f"unknown trajectory '{name}' (planned: {', '.join(order) or 'none'})")
    return order.index(name) + 1


def _input_view(scene: SceneDir) -> tuple[Camera, np.ndarray]:
    """The input camera and its observed depth: free space that synthesised points may not fill."""
    meta = scene.load()
    W, H = meta["working_size"]
    return Camera(np.asarray(meta["K"]), np.eye(4), W, H), np.load(scene.input_depth)


def _previous_hash(scene: SceneDir, step: int) -> str:
    """Hash of the cache state this step starts from: the previous trajectory's update, or prepare."""
    order = scene.load()["trajectory_order"]
    return _hash_of(scene, "plan") if step == 1 else _hash_of(scene, f"update_cache/{order[step - 2]}")


def _invalidate_after(scene: SceneDir, step: int) -> None:
    order = scene.load()["trajectory_order"]
    for later in order[step:]:
        scene.invalidate(f"generate/{later}")
        scene.invalidate(f"update_cache/{later}")
    scene.invalidate("export")


def generate_hash(scene: SceneDir, cfg: GenerationConfig, name: str) -> str:
    step = _step_of(scene, name)
    return config_hash("generate", name, _previous_hash(scene, step), cfg.generator, cfg.memory.retrieval)


def stage_generate(scene: SceneDir, cfg: GenerationConfig, name: str, force: bool = False) -> str:
    timer = StageTimer(f"generate/{name}")
    step = _step_of(scene, name)
    chash = generate_hash(scene, cfg, name)
    if not force and scene.stage_done(f"generate/{name}", chash):
        timer.skipped(str(scene.video(name)))
        return chash
    meta = scene.load()
    traj = load_trajectory(scene.trajectory(name))
    cache = PointCache.load(scene.cache_ply).before_step(step)
    bank = MemoryBank(scene.memory_bank)
    bank.entries = bank.visible_before(step)
    refs = retrieve(traj.cameras, bank.entries, meta["pivot_depth_m"], cfg.memory.retrieval)
    cond = [cache.render(c, cfg.generator.geometric.splat_scale) for c in progress(traj.cameras, f"{name}: cache render")]
    cond_rgb = np.stack([r.rgb for r in cond])
    cond_hole = np.stack([r.hole for r in cond])
    req = GenerationRequest(traj, cache, bank, refs, step, meta["pivot_depth_m"], cond_rgb, cond_hole,
                            observed=_input_view(scene))
    out = make_generator(cfg.generator.backend, cfg.generator.geometric).generate(req, progress_desc=f"{name}: generate")

    with atomic_dir(scene.conditions(name)) as tmp:
        write_video(tmp / "render.mp4", cond_rgb, cfg.generator.fps)
        write_video(tmp / "mask.mp4", (cond_hole * 255).astype(np.uint8), cfg.generator.fps)
        (tmp / "refs.json").write_text(json.dumps([dataclasses.asdict(r) for r in refs], indent=1))
    with atomic_dir(scene.frames(name)) as tmp:
        for i, img in enumerate(out.rgb):
            write_image(tmp / f"{i:06d}.png", img)
        np.save(tmp / "depth.npy", out.depth.astype(np.float32))
        np.save(tmp / "conf.npy", out.conf.astype(np.float32))
    write_video(scene.video(name), out.rgb, cfg.generator.fps)
    sheet = scene.root / "videos" / f"{name}_sheet.png"
    write_image(sheet, contact_sheet(out.rgb, out.depth, cond_hole))
    _invalidate_after(scene, step - 1)  # this trajectory's update and everything later is stale
    holes = float(cond_hole.mean())
    scene.record_stage(f"generate/{name}", chash, [scene.video(name), scene.frames(name) / "depth.npy",
                                                   scene.conditions(name) / "refs.json", sheet], timer.seconds,
                       backend=out.backend, hole_fraction=round(holes, 4),
                       refs_used=sorted({r.ref_id for r in refs}))
    timer.done(str(scene.video(name)), f"{len(traj)} frames, cache holes {100 * holes:.1f}%, backend {out.backend}")
    return chash


def update_hash(scene: SceneDir, cfg: GenerationConfig, name: str) -> str:
    return config_hash("update_cache", name, _hash_of(scene, f"generate/{name}"), cfg.cache, cfg.memory.keyframes)


def stage_update_cache(scene: SceneDir, cfg: GenerationConfig, name: str, force: bool = False) -> str:
    """Align each generated frame's depth to the cache (robust Sim(3)), fuse what agrees into the
    point it re-observes, merge what is new by voxel; then remember keyframes in the bank."""
    timer = StageTimer(f"update_cache/{name}")
    step = _step_of(scene, name)
    chash = update_hash(scene, cfg, name)
    if not force and scene.stage_done(f"update_cache/{name}", chash):
        timer.skipped(str(scene.cache_ply))
        return chash
    meta = scene.load()
    traj = load_trajectory(scene.trajectory(name))
    frames_dir = scene.frames(name)
    depth = np.load(frames_dir / "depth.npy")
    conf = np.load(frames_dir / "conf.npy")
    cache = PointCache.load(scene.cache_ply).before_step(step)
    n_before = len(cache)
    observed = _input_view(scene)
    voxel = meta["voxel_m"]
    aligns = []
    rgbs = []
    for j, cam in enumerate(progress(traj.cameras, f"{name}: update cache")):
        rgb = read_image(frames_dir / f"{j:06d}.png")
        rgbs.append(rgb)
        render = cache.render(cam)
        T, rec = align_frame_to_cache(depth[j], cam, render, j, cfg.cache.min_overlap_px, cfg.cache.max_pairs)
        aligns.append(rec)
        cache = fuse_frame(cache, rgb, depth[j], conf[j], cam, render, T, step, j, voxel, cfg.cache.max_conf,
                           observed=observed)
    bank = MemoryBank(scene.memory_bank)
    bank.drop_from_step(step)
    for j in np.unique(np.round(np.linspace(0, len(traj) - 1, cfg.memory.keyframes)).astype(int)):
        bank.add(rgbs[j], depth[j], traj.cameras[j], source=name, step=step, frame=int(j))
    cache.save(scene.cache_ply)
    bank.save()
    _invalidate_after(scene, step)
    rmse = [a.rmse_after for a in aligns if np.isfinite(a.rmse_after)]
    summary = {
        "points_before": n_before, "points_after": len(cache),
        "median_rmse_after_m": float(np.median(rmse)) if rmse else None,
        "max_rmse_after_m": float(np.max(rmse)) if rmse else None,
        "median_scale": float(np.median([a.scale for a in aligns])),
        "frames": [dataclasses.asdict(a) for a in aligns],
    }
    scene.record_stage(f"update_cache/{name}", chash, [scene.cache_ply, scene.memory_bank / "index.json"],
                       timer.seconds, alignment=summary)
    timer.done(str(scene.cache_ply), f"cache {n_before:,} → {len(cache):,} points, Umeyama RMSE median "
               f"{summary['median_rmse_after_m'] or 0:.2e} m")
    return chash


# --------------------------------------------------------------------------- export


def stage_export(scene: SceneDir, cfg: GenerationConfig, force: bool = False) -> str:
    """exports/npz/results.npz: the input view (frame 0) and every generated frame, in plan order."""
    timer = StageTimer("export")
    order = scene.load()["trajectory_order"]
    chash = config_hash("export", [_hash_of(scene, f"update_cache/{n}") for n in order])
    if not force and scene.stage_done("export", chash):
        timer.skipped(str(scene.results_npz))
        return chash
    meta = scene.load()
    K0 = np.asarray(meta["K"], np.float32)
    images = [read_image(scene.input_image)]
    depths = [np.load(scene.input_depth)]
    confs = [(depths[0] > 0).astype(np.float32)]
    w2cs = [np.eye(4)[:3]]
    Ks = [K0]
    index = [{"trajectory": "input", "frame": 0}]
    for name in order:
        traj = load_trajectory(scene.trajectory(name))
        d = np.load(scene.frames(name) / "depth.npy")
        c = np.load(scene.frames(name) / "conf.npy")
        for j, cam in enumerate(traj.cameras):
            images.append(read_image(scene.frames(name) / f"{j:06d}.png"))
            depths.append(d[j])
            confs.append(c[j])
            w2cs.append(cam.w2c[:3])
            Ks.append(cam.K)
            index.append({"trajectory": name, "frame": j})
    res = FrameResults(np.stack(depths).astype(np.float32), np.stack(confs).astype(np.float32),
                       np.stack(w2cs).astype(np.float32), np.stack(Ks).astype(np.float32), np.stack(images))
    save_results(scene.results_npz, res)
    atomic_write_text(scene.results_npz.with_name("frames.json"), json.dumps(index))
    scene.record_stage("export", chash, [scene.results_npz], timer.seconds, frames=len(res))
    timer.done(str(scene.results_npz), f"{len(res)} frames")
    return chash
