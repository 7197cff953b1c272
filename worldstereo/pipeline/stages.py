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

from worldstereo.cameras import (Camera, Trajectory, is_release_camera_json, load_trajectory, plan_trajectory,
                                relative_to_first, save_trajectory, scale_intrinsics)
from worldstereo.console import StageTimer, progress
from worldstereo.depth.anchor import anchor_depth
from worldstereo.errors import InputError
from worldstereo.generate.base import GenerationRequest
from worldstereo.generate.registry import make_generator
from worldstereo.io.atomic import atomic_copy, atomic_dir, atomic_write_text
from worldstereo.io.dataclass_json import to_jsonable
from worldstereo.io.images import read_image, write_image
from worldstereo.io.results import FrameResults, save_results
from worldstereo.io.video import check_video_writer, write_video
from worldstereo.memory.bank import MemoryBank
from worldstereo.memory.cache import PointCache, align_frame_to_cache, fuse_frame, world_points
from worldstereo.memory.retrieval import retrieve
from worldstereo.panorama.equirect import EquirectCamera, nearest_surface
from worldstereo.pipeline.config import (DIFFUSION_BACKENDS, GenerationConfig, custom_trajectory_name,
                                         frame_depth_model_dir, is_panorama,
                                         pano_planner_config, trajectory_names)
from worldstereo.pipeline.prepare import InputView, load_input_view, write_prepared
from worldstereo.pipeline.prepare_pano import PanoramaView, load_panorama_input, write_prepared_panorama
from worldstereo.pipeline.report import contact_sheet
from worldstereo.scene import SceneDir, SceneManifest, config_hash, file_digest

# --------------------------------------------------------------------------- keys and inputs


def load_input(cfg: GenerationConfig) -> InputView | PanoramaView:
    """The input photo or panorama, read and validated (nothing written)."""
    return load_panorama_input(cfg.input) if is_panorama(cfg.input) else load_input_view(cfg.input)


def prepare_key(cfg: GenerationConfig, view: InputView | PanoramaView) -> str:
    """Config without the input paths (a file moved or named relatively is the same input) + content."""
    inp = dataclasses.replace(cfg.input, image=None, depth=None, depth_model=None)
    return config_hash("prepare", inp, cfg.cache.edge_rel_thresh, cfg.cache.voxel_scale, view.source_id)


def plan_key(cfg: GenerationConfig) -> str:
    custom = [(custom_trajectory_name(p), file_digest(p)) for p in cfg.plan.custom]
    if is_panorama(cfg.input):  # the photo key stays as it was, so existing scenes stay current
        return config_hash("plan", pano_planner_config(cfg.plan), custom)
    return config_hash("plan", list(cfg.plan.order), cfg.plan.planner, custom)


def generate_key(cfg: GenerationConfig, name: str) -> str:
    return config_hash("generate", name, cfg.generator, cfg.memory.retrieval)


def update_key(cfg: GenerationConfig, name: str) -> str:
    model = frame_depth_model_dir(cfg)
    depth_model = () if model is None else (str(model), cfg.input.depth_model_output)
    return config_hash("update_cache", name, cfg.cache, cfg.memory.keyframes, cfg.generator.frame_depth, *depth_model)


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


def _input_view(scene: SceneDir) -> tuple[Camera | EquirectCamera, np.ndarray] | None:
    """The input camera and its observed depth: free space that synthesised points may not fill.
    A panorama observes from the world origin in every direction; its depth is the ray-distance
    map with each pixel the nearest of its neighbours (equirect.nearest_surface, docs/panorama.md)."""
    m = scene.load()
    if m.input_kind == "panorama":
        distance_m = np.load(scene.input_depth)
        return EquirectCamera(distance_m.shape[1], distance_m.shape[0]), nearest_surface(distance_m)
    W, H = m.working_size
    return Camera(np.asarray(m.K), np.eye(4), W, H), np.load(scene.input_depth)


# --------------------------------------------------------------------------- prepare / plan


def stage_prepare(scene: SceneDir, cfg: GenerationConfig, force: bool = False,
                  view: InputView | PanoramaView | None = None) -> None:
    timer = StageTimer("prepare")
    view = view or load_input(cfg)  # reads and validates before anything is written
    key = prepare_key(cfg, view)
    if not force and scene.is_current("prepare", key):
        timer.skipped(str(scene.root))
        return
    with scene.lock():
        if not scene.exists():  # first: an interrupted first run leaves a folder the next run knows as ours
            scene.save(SceneManifest(config=to_jsonable(cfg)))
        outputs = [scene.input_image, scene.input_depth, scene.cache_step(0), scene.bank_index]
        if isinstance(view, PanoramaView):
            fields = write_prepared_panorama(scene, view, cfg.cache)
            outputs.append(scene.input_panorama)
        else:
            fields = write_prepared(scene, view, cfg.cache)
        scene.update(**fields, config=to_jsonable(cfg))
        scene.record_stage("prepare", key, outputs, timer.seconds)
    d = fields["depth_source"]
    W, H = fields["working_size"]
    timer.done(str(scene.root), f"{W}×{H}, depth: {d.kind}{' (FALLBACK)' if d.fallback else ''}, "
               f"cache {fields['cache_points']['input']:,} points")


def load_custom_trajectories(cfg: GenerationConfig) -> list[Trajectory]:
    """The --custom files, read and validated (named after their file, see custom_trajectory_name).
    A WorldStereo camera.json is re-expressed relative to its frame 0, the release's input view."""
    out = []
    for path in cfg.plan.custom:
        t = load_trajectory(path)
        if is_release_camera_json(json.loads(Path(path).read_text())):
            t = relative_to_first(t)
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
        if m.input_kind == "panorama":
            trajs = _plan_panorama(scene, cfg)
        else:
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


def _plan_panorama(scene: SceneDir, cfg: GenerationConfig) -> list[Trajectory]:
    """The panorama planner's trajectories from the bank views prepare stored (source `panorama`)."""
    from worldstereo.panorama.planner import pivot_depths_from_distance, plan_inside

    entries = sorted((e for e in MemoryBank(scene.memory_bank).entries if e.source == "panorama"), key=lambda e: e.frame)
    cams = [e.camera for e in entries]
    pcfg = pano_planner_config(cfg.plan)
    distance_m = np.load(scene.input_depth)
    pivots = pivot_depths_from_distance(distance_m, cams, pcfg.views)
    trajs, lowered = plan_inside(cams, pivots, distance_m, pcfg)
    for name, up in lowered.items():
        print(f"[plan] {name}: rises {up:g}° instead of {pcfg.aerial_up_deg:g}° (higher, it would leave the "
              "space the panorama saw)", flush=True)
    return trajs


# --------------------------------------------------------------------------- per trajectory


def stage_generate(scene: SceneDir, cfg: GenerationConfig, name: str, force: bool = False) -> None:
    """Render the cache along trajectory `name`, retrieve references, and run the generator."""
    timer = StageTimer(f"generate/{name}")
    step = _step_of(scene, name)
    key = generate_key(cfg, name)
    stage = f"generate/{name}"
    if not force and (scene.is_current(stage, key) or _kept_import(scene, stage)):
        timer.skipped(str(scene.video(name)))
        return
    check_video_writer()  # the videos are written after the generation (minutes per trajectory on a GPU)
    with scene.lock():
        inputs = _consume(scene, ["plan", _state_before(scene, step)], scene.trajectory(name))
        _, req = _generation_request(scene, cfg, name, step)
        out = make_backend(cfg).generate(req, progress_desc=f"{name}: generate")
        _finish_generate(scene, cfg, name, stage, key, out, req, inputs, timer)


def _kept_import(scene: SceneDir, stage: str) -> bool:
    """Imported frames stay while their inputs are current: only --force (or a new import) replaces them."""
    rec = scene.stage_record(stage)
    return rec is not None and rec.info.get("backend") == "imported" and scene.status(stage).current


def stage_import_video(scene: SceneDir, cfg: GenerationConfig, name: str, video: Path, force: bool = False) -> None:
    """Frames made elsewhere (e.g. by the release's own scripts) as trajectory `name`'s generated frames:
    recorded like a generate run with backend "imported"; update_cache then estimates their depth."""
    from worldstereo.generate.base import GeneratedFrames
    from worldstereo.pipeline.interop import imported_frames

    timer = StageTimer(f"generate/{name}")
    step = _step_of(scene, name)
    stage = f"generate/{name}"
    key = config_hash("generate", name, "imported", file_digest(video) if Path(video).is_file() else str(video))
    if not force and scene.is_current(stage, key):
        timer.skipped(str(scene.video(name)))
        return
    planned = load_trajectory(scene.trajectory(name))
    rgb, note = imported_frames(Path(video), len(planned), planned.width, planned.height)  # checked before writing
    if note:
        print(f"[generate/{name}] {video}: {note}", flush=True)
    with scene.lock():
        inputs = _consume(scene, ["plan", _state_before(scene, step)], scene.trajectory(name))
        _, req = _generation_request(scene, cfg, name, step)
        out = GeneratedFrames(rgb, None, None, "imported", notes=note)
        _finish_generate(scene, cfg, name, stage, key, out, req, inputs, timer, imported_from=str(video),
                         import_note=note)


def make_backend(cfg: GenerationConfig):
    """The generator of `cfg.generator.backend`, built from its own config."""
    g = cfg.generator
    if g.backend not in DIFFUSION_BACKENDS:
        return make_generator(g.backend, g.geometric)
    from worldstereo.generate.worldstereo.generator import WorldStereoGeneratorConfig
    from worldstereo.generate.worldstereo.sampling import prompt_from_json

    prompt = g.prompt or (prompt_from_json(g.prompt_file) if g.prompt_file is not None else "")
    return make_generator(g.backend, WorldStereoGeneratorConfig(g.backend, g.weights, g.base_model, prompt=prompt,
                                                                prompt_embeds=g.prompt_embeds, device=g.device,
                                                                offload=g.offload))


def _generation_request(scene: SceneDir, cfg: GenerationConfig, name: str, step: int) -> tuple[Trajectory, GenerationRequest]:
    """The cache render, hole mask and retrieved references along trajectory `name`."""
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
    return traj, GenerationRequest(traj, cache, bank, refs, step, pivot, cond_rgb, cond_hole, observed=_input_view(scene))


def _finish_generate(scene: SceneDir, cfg: GenerationConfig, name: str, stage: str, key: str, out, req, inputs,
                     timer: StageTimer, **info) -> None:
    """Write a backend's frames and the conditions, and record the stage."""
    _write_generated(scene, name, cfg, out, req.cond_rgb, req.cond_hole, req.references)
    holes = float(req.cond_hole.mean())
    scene.record_stage(stage, key, [scene.video(name), scene.frames(name), scene.conditions(name),
                                    scene.contact_sheet(name)], timer.seconds, inputs=inputs,
                       backend=out.backend, hole_fraction=round(holes, 4),
                       refs_used=sorted({r.ref_id for r in req.references}), **info)
    timer.done(str(scene.video(name)), f"{len(req.trajectory)} frames, cache holes {100 * holes:.1f}%, "
               f"backend {out.backend}")


def _write_generated(scene: SceneDir, name: str, cfg: GenerationConfig, out, cond_rgb: np.ndarray,
                     cond_hole: np.ndarray, refs: list) -> None:
    with atomic_dir(scene.conditions(name)) as tmp:
        write_video(tmp / "render.mp4", cond_rgb, cfg.generator.fps)
        write_video(tmp / "mask.mp4", (cond_hole * 255).astype(np.uint8), cfg.generator.fps)
        (tmp / "refs.json").write_text(json.dumps([dataclasses.asdict(r) for r in refs], indent=1))
    with atomic_dir(scene.frames(name)) as tmp:
        for j, img in enumerate(out.rgb):
            write_image(SceneDir.frame_png(tmp, j), img)
        if out.depth is not None:  # pixel-only backends: update_cache estimates the depth
            np.save(tmp / "depth.npy", out.depth.astype(np.float32))
            np.save(tmp / "conf.npy", out.conf.astype(np.float32))
    write_video(scene.video(name), out.rgb, cfg.generator.fps)
    depth = out.depth if out.depth is not None else np.zeros(out.rgb.shape[:3], np.float32)
    write_image(scene.contact_sheet(name), contact_sheet(out.rgb, depth, cond_hole))


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
        cache, aligns, rgbs, depth, extra = _merge_frames(scene, cfg, name, traj, cache, step)
        bank = MemoryBank(scene.memory_bank)
        bank.drop_from_step(step)
        added = [bank.add(rgbs[j], depth[j], traj.cameras[j], source=name, step=step, frame=int(j))
                 for j in np.unique(np.round(np.linspace(0, len(traj) - 1, cfg.memory.keyframes)).astype(int))]
        cache.save(scene.cache_step(step))
        atomic_copy(scene.cache_step(step), scene.cache_ply)
        bank.save()
        summary = _alignment_summary(aligns, n_before, len(cache)) | extra
        outputs = [scene.cache_step(step)] + [scene.memory_bank / e.image for e in added]
        outputs += [scene.frame_depth(name)] if extra else []
        scene.record_stage(stage, key, outputs, timer.seconds, inputs=inputs, alignment=summary)
    timer.done(str(scene.cache_ply), f"cache {n_before:,} → {len(cache):,} points, Umeyama RMSE median "
               f"{summary['median_rmse_after_m'] or 0:.2e} m")


def _merge_frames(scene: SceneDir, cfg: GenerationConfig, name: str, traj: Trajectory, cache: PointCache, step: int):
    """Align and fuse every frame of one trajectory into the cache, in frame order. Frames of a
    pixel-only backend get depth first (`_frame_depth`: stereo, or a depth model made metric against
    the cache render here) and may be rejected (`_rejected`)."""
    frames_dir = scene.frames(name)
    rgbs = [read_image(SceneDir.frame_png(frames_dir, j)) for j in range(len(traj))]
    depth, conf, source = _frame_depth(scene, cfg, name, traj, rgbs)
    observed = _input_view(scene)
    voxel = scene.load().voxel_m
    aligns, rejected, anchors = [], [], []
    for j, cam in enumerate(progress(traj.cameras, f"{name}: update cache")):
        render = cache.render(cam)
        if source == "model":
            depth[j], fit = anchor_depth(depth[j], cfg.input.depth_model_output, render.depth, ~render.hole,
                                         cfg.cache.min_overlap_px)
            conf[j] = (depth[j] > 0).astype(np.float32)
            anchors.append(None if fit is None else dataclasses.asdict(fit))
        T, rec = align_frame_to_cache(depth[j], cam, render, j, cfg.cache.min_overlap_px, cfg.cache.max_pairs)
        aligns.append(rec)
        if source is not None and _rejected(depth[j], rec, cfg, metric=source == "mvs"):
            rejected.append(j)
            continue
        cache = fuse_frame(cache, rgbs[j], depth[j], conf[j], cam, render, T, step, j, voxel, cfg.cache.max_conf,
                           observed=observed)
    if source is None:
        return cache, aligns, rgbs, depth, {}
    with atomic_dir(scene.frame_depth(name)) as tmp:
        np.save(tmp / "depth.npy", depth.astype(np.float32))
        np.save(tmp / "conf.npy", conf.astype(np.float32))
    extra = {"depth_source": source, "rejected_frames": rejected}
    if source == "model":
        extra |= {"depth_model": str(frame_depth_model_dir(cfg)), "anchor_fits": anchors}
    return cache, aligns, rgbs, depth, extra


def _frame_depth(scene: SceneDir, cfg: GenerationConfig, name: str, traj: Trajectory,
                 rgbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Depth and confidence [N, H, W] of a trajectory's frames and where they came from: the
    generator's (None); plane-sweep stereo along the planned cameras ("mvs", metric); or a local
    depth model's raw output ("model", made metric per frame by `_merge_frames`)."""
    frames_dir = scene.frames(name)
    if (frames_dir / "depth.npy").exists():
        return np.load(frames_dir / "depth.npy"), np.load(frames_dir / "conf.npy"), None
    model_dir = frame_depth_model_dir(cfg)
    if model_dir is not None:
        from worldstereo.depth.model import DepthModel

        model = DepthModel(model_dir)
        raw = np.stack([model.raw(rgb) for rgb in progress(rgbs, f"{name}: depth model")]).astype(np.float32)
        return raw, np.ones_like(raw), "model"
    from worldstereo.depth.mvs import mvs_sequence

    depth, conf = mvs_sequence(np.stack(rgbs), traj.K(), traj.c2w(), cfg.generator.frame_depth.mvs())
    return depth, conf, "mvs"


def _rejected(depth_m: np.ndarray, rec, cfg: GenerationConfig, metric: bool) -> bool:
    """An estimated frame too sparse, or aligned with a residual or inlier ratio out of bounds.
    A frame with too little cache overlap to align keeps the planned cameras' scale if its depth is
    metric (stereo); a model's frame then has no scale and was already emptied by anchor_depth."""
    fd = cfg.generator.frame_depth
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if len(valid) < fd.min_valid_px:
        return True
    if not np.isfinite(rec.rmse_after):
        return not metric
    return rec.rmse_after > fd.max_rel_rmse * float(np.median(valid)) or rec.inlier_ratio < fd.min_inlier_ratio


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


def _input_frames(scene: SceneDir) -> tuple[list, list, list, list, list, list[dict]]:
    """(images, depths, confs, w2cs, Ks, index) of the input: the reference view, or a panorama's bank views."""
    m = scene.load()
    if m.input_kind == "panorama":
        bank = MemoryBank(scene.memory_bank)
        entries = sorted((e for e in bank.entries if e.source == "panorama"), key=lambda e: e.frame)
        depths = [bank.depth(e) for e in entries]
        return ([bank.image(e) for e in entries], depths, [(d > 0).astype(np.float32) for d in depths],
                [e.camera.w2c[:3] for e in entries], [e.camera.K for e in entries],
                [{"trajectory": "panorama", "frame": e.frame} for e in entries])
    depth = np.load(scene.input_depth)
    return ([read_image(scene.input_image)], [depth], [(depth > 0).astype(np.float32)], [np.eye(4)[:3]],
            [np.asarray(m.K, np.float32)], [{"trajectory": "input", "frame": 0}])


def _gather_frames(scene: SceneDir, order: list[str]) -> tuple[FrameResults, list[dict]]:
    images, depths, confs, w2cs, Ks, index = _input_frames(scene)
    for name in order:
        traj = load_trajectory(scene.trajectory(name))
        depth_dir = scene.frames(name) if (scene.frames(name) / "depth.npy").exists() else scene.frame_depth(name)
        d = np.load(depth_dir / "depth.npy")
        c = np.load(depth_dir / "conf.npy")
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
