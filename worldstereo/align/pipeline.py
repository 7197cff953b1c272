"""The reconstruct stage: scene folder in, align/ out.

    load results.npz → select frames → sequential non-rigid ICP → (global opt) → inverse fit
    → align/{canonical.ply, deformations.npz, config.json, convention.json, metrics.json, tb/}

The whole align/ folder is built under a temporary name and swapped in when complete. The stage
is recorded in scene.json as "reconstruct"; a folder that only has exports/npz/results.npz
(video_to_world, DA3) gets a minimal scene.json (input_kind "external") holding that record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worldstereo import console
from worldstereo.align.bundle import BundleStats, bundle_adjust, verified_matches
from worldstereo.align.camera_refine import bearing_pnp, rigid_c2w
from worldstereo.align.deform import DeformConfig
from worldstereo.align.drift import DriftStats, correct_drift, given_units_scale, world_correction
from worldstereo.align.fuse import SupportStats, support_filter
from worldstereo.align.global_opt import GlobalOptConfig, GlobalOptStats, global_optimise
from worldstereo.align.icp import (AlignResult, FrameMetrics, FrameState, ICPConfig, check_icp_config, merge_frame,
                                   sequential_align, world_pointmap)
from worldstereo.align.inverse import (DEFORMATIONS_FILE, InverseConfig, InverseField, fit_inverse,
                                       save_deformations)
from worldstereo.align.preprocess import FramePoints, PreprocessConfig, frame_points, select_frames
from worldstereo.align.voxel_model import VoxelModel
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_dir, atomic_write_text
from worldstereo.io.dataclass_json import to_jsonable
from worldstereo.io.ply import write_ply
from worldstereo.io.results import load_results
from worldstereo.scene import DepthSource, SceneDir, config_hash, file_digest

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

STAGE = "reconstruct"
CAMERAS_FILE = "cameras_refined.json"
PNP_POINTS = 5000  # points per frame in the refined cameras' reprojection fit
OUTPUTS = ("canonical.ply", DEFORMATIONS_FILE, "config.json", "convention.json", "metrics.json", CAMERAS_FILE)

CONVENTION = {
    "axes": "OpenCV camera: x right, y down, z forward; world = frame 0's given world (gauge)",
    "units": "those of results.npz depth (metres where known)",
    "canonical.ply": "canonical world points (the support filter's consensus positions): x y z, nx ny nz, "
                     "red green blue (uchar), conf (summed "
                     "confidence), frame (first results.npz frame index that filled the voxel)",
    "forward": "X_canonical = c2w_aligned · (x + δ(x)); x in frame camera space (OpenCV); δ = trilinear "
               "grid (grid_lo/hi/values; grid coordinates per grid_space) [+ hash field]",
    "inverse": "x = y + δ'(y), y = c2w_aligned⁻¹ · X_canonical (inv_lo/hi/values); the frame's world "
               "placement is c2w_given · x",
    "matrices": "c2w_given, c2w_aligned: 4×4 camera-to-world; results.npz extrinsics are w2c 3×4",
    "frame_index": "original results.npz frame indices (offset and stride applied)",
    CAMERAS_FILE: "refined cameras: trajectory JSON {width, height, frames: [{c2w, K}]}; c2w = the camera that "
                  "sees the frame's aligned points at their own pixels (robust reprojection fit, started "
                  "from the rigid part of its alignment), then bundle-adjusted with the other accepted frames "
                  "on dense matches (metrics.json 'bundle'), then moved by the drift correction towards the "
                  "given cameras (metrics.json 'drift'); a rejected frame keeps its given c2w",
}


@dataclass
class RoundTripSummary:
    """Inverse deformation round trip over the accepted frames (fractions of the scene scale; a
    rejected frame's inverse is written too, but its deformation bent random depth onto the model
    and is no measure of the fit)."""

    p95_max: float  # largest per-frame p95
    median: float | None  # median of the per-frame medians
    tolerance: float
    units: str = "fraction of scene_scale"


@dataclass
class ReconstructMetrics:
    """align/metrics.json: residuals are medians of |point-to-plane| in scene units (see FrameMetrics)."""

    frames: list[int]  # original results.npz indices aligned
    scene_scale: float  # median camera depth of the first frame
    points: int  # canonical.ply points
    p2plane_median_before: float | None
    p2plane_median_after: float | None
    global_opt: GlobalOptStats | None
    inverse_round_trip: RoundTripSummary
    per_frame: list[FrameMetrics]
    seconds: dict[str, float]  # per stage: preprocess, icp, global_opt (when run), cameras, inverse, fuse, write, total
    rejected_frames: list[int] = field(default_factory=list)  # original indices whose alignment failed
    fuse: SupportStats | None = None  # the support filter (None when off)
    drift: DriftStats | None = None  # the drift correction of cameras and placements (drift.py)
    bundle: BundleStats | None = None  # the bundle adjustment of the refined cameras (bundle.py)

    @staticmethod
    def from_json(d: dict) -> "ReconstructMetrics":
        """Read back what `to_jsonable(metrics)` wrote (NaN was written as null)."""
        def floats(r: dict) -> dict:
            return {k: float("nan") if v is None else v for k, v in r.items()}

        glob = None if d["global_opt"] is None else GlobalOptStats(**floats(d["global_opt"]))
        return ReconstructMetrics(
            d["frames"], d["scene_scale"], d["points"], d["p2plane_median_before"], d["p2plane_median_after"],
            glob, RoundTripSummary(**d["inverse_round_trip"]), [FrameMetrics(**floats(r)) for r in d["per_frame"]],
            d["seconds"], d.get("rejected_frames", []), SupportStats(**d["fuse"]) if d.get("fuse") else None,
            DriftStats(**floats(d["drift"])) if d.get("drift") else None,
            BundleStats(**floats(d["bundle"])) if d.get("bundle") else None)


@dataclass
class ReconstructOutputs:
    """Paths and figures of a finished run."""

    align_dir: Path
    metrics: ReconstructMetrics
    skipped: bool = False


def results_producer(scene: SceneDir) -> str | None:
    """The stage of this scene that wrote results.npz (export, or reconstruct.py's import), if any."""
    stages = scene.load().stages if scene.exists() else {}
    return next((s for s in ("export", "import") if s in stages), None)


def reconstruct_key(scene: SceneDir, *configs) -> tuple[str, dict[str, str]]:
    """(key, consumed inputs): our results.npz is keyed by the run that wrote it (refused when stale);
    an outside one (video_to_world, DA3) by its content."""
    producer = results_producer(scene)
    if producer is not None:
        return config_hash(STAGE, *configs), {producer: scene.require_current(producer, scene.results_npz).run}
    return config_hash(STAGE, *configs, file_digest(scene.results_npz)), {}


def stage_import(scene: SceneDir, video: Path, preprocess: PreprocessConfig, depth_npz: Path | None,
                 cameras: Path | None, force: bool = False) -> None:
    """reconstruct.py --input-video: the outside video's frames (+ depth) as the scene's results.npz,
    keyed by the content of the files it reads, so a rerun with the same files does nothing."""
    from worldstereo.align.preprocess import import_video

    timer = console.StageTimer("import")
    if scene.exists() and "export" in scene.load().stages:
        raise InputError(scene.root, "this scene's results.npz comes from run_pipeline.py: "
                                     "import an outside video into another --scene")
    for p in (video, depth_npz, cameras):
        if p is not None and not Path(p).is_file():
            raise InputError(p, "file not found")
    key = config_hash("import", preprocess, *[file_digest(p) if p is not None else None for p in (video, depth_npz, cameras)])
    if not force and scene.is_current("import", key):
        timer.skipped(str(scene.results_npz))
        return
    scene.check_writable()
    with scene.lock():
        res = import_video(Path(video), scene.results_npz, preprocess, depth_npz, cameras)
        if not scene.exists():
            scene.update(input_kind="external", depth_source=DepthSource(
                preprocess.depth_source, str(Path(depth_npz).absolute()) if depth_npz else None))
        scene.record_stage("import", key, [scene.results_npz], timer.seconds, video=str(Path(video).absolute()))
    timer.done(str(scene.results_npz), f"{len(res)} frames")


def run_reconstruct(scene_root: Path, preprocess: PreprocessConfig, icp: ICPConfig, deform: DeformConfig,
                    global_opt: GlobalOptConfig, inverse: InverseConfig, force: bool = False,
                    tensorboard: bool = True) -> ReconstructOutputs:
    """Align the frames of <scene_root>/exports/npz/results.npz into align/."""
    check_icp_config(icp)
    scene = SceneDir(scene_root)
    npz = scene.results_npz
    if not npz.exists():
        raise InputError(npz, "no results.npz: run run_pipeline.py first, or pass --input-video with --depth-npz")
    scene.check_writable()
    if scene.exists():
        scene.load()  # fail early on an unreadable manifest
    chash, inputs = reconstruct_key(scene, preprocess, icp, deform, global_opt, inverse)
    if not force and scene.is_current(STAGE, chash):
        metrics = ReconstructMetrics.from_json(json.loads((scene.align_dir / "metrics.json").read_text()))
        return ReconstructOutputs(scene.align_dir, metrics, skipped=True)
    t_all = time.perf_counter()
    idx, frames = _load_frames(npz, preprocess)  # every input problem is found before the first write
    times = {"preprocess": time.perf_counter() - t_all}
    with scene.lock():
        return _reconstruct(scene, chash, inputs, idx, frames, times, t_all, preprocess, icp, deform, global_opt,
                            inverse, tensorboard)


def _load_frames(npz: Path, preprocess: PreprocessConfig) -> tuple[np.ndarray, list]:
    """(selected results.npz indices, their camera-space points), validated."""
    results = load_results(npz)
    idx = select_frames(len(results), preprocess.frames, preprocess.stride, preprocess.offset)
    if len(idx) < 2:
        raise InputError(npz, f"{len(results)} frame(s) with --preprocess frames/stride/offset select {len(idx)}: "
                              "alignment needs at least 2")
    frames = [frame_points(results, int(i), preprocess) for i in idx]
    if len(frames[0].xyz) < 100:
        raise InputError(npz, f"frame {idx[0]} has only {len(frames[0].xyz)} valid depth pixels")
    return idx, frames


def _reconstruct(scene: SceneDir, chash: str, inputs: dict[str, str], idx: np.ndarray, frames: list,
                 times: dict[str, float], t_all: float, preprocess: PreprocessConfig, icp: ICPConfig,
                 deform: DeformConfig, global_opt: GlobalOptConfig, inverse: InverseConfig,
                 tensorboard: bool) -> ReconstructOutputs:
    """The work of run_reconstruct, under the scene's lock."""
    npz = scene.results_npz
    scale = float(np.median(frames[0].xyz[:, 2]))

    with atomic_dir(scene.align_dir) as out:
        writer = _tb_writer(out / "tb") if tensorboard else None
        res, glob = _align(frames, preprocess, icp, deform, global_opt, scale, writer, times)

        t = time.perf_counter()
        cameras, bundle, drift = _refine_cameras(frames, res, icp, scale)
        times["cameras"] = time.perf_counter() - t
        if drift.given_scale != 1.0:
            console.warn(f"the aligned path is {drift.given_scale:.3g} × the given cameras' (other units than the "
                         "depth?): the drift correction rescaled them, but the alignment's start poses and the "
                         "centre prior assume one unit; set --preprocess.depth-model-median-m to match the "
                         "cameras, or pass --icp.centre-prior 0")

        t = time.perf_counter()
        inverses, round_trip = _fit_inverses(frames, res, inverse, scale)
        times["inverse"] = time.perf_counter() - t

        t = time.perf_counter()
        keep, xyz, fuse_stats = _support(frames, res, icp, preprocess.max_depth_jump, scale)
        times["fuse"] = time.perf_counter() - t

        t = time.perf_counter()
        _write_canonical(out / "canonical.ply", res.model, keep, xyz)
        save_deformations(out / DEFORMATIONS_FILE, frames, res.states, inverses, scale, res.rejected)
        _write_cameras(out / CAMERAS_FILE, frames, cameras)
        times["write"] = time.perf_counter() - t
        times["total"] = time.perf_counter() - t_all

        metrics = ReconstructMetrics(
            frames=[int(i) for i in idx], scene_scale=scale, points=int(keep.sum()),
            p2plane_median_before=_nanmed([r.p2plane_before for r in res.per_frame]),
            p2plane_median_after=_nanmed([r.p2plane_after for r in res.per_frame]),
            global_opt=glob, inverse_round_trip=round_trip, per_frame=res.per_frame, seconds=times,
            rejected_frames=[frames[k].index for k in res.rejected], fuse=fuse_stats, drift=drift,
            bundle=bundle)
        cfg = {"preprocess": preprocess, "icp": icp, "deform": deform, "global_opt": global_opt,
               "inverse": inverse, "config_hash": chash}
        atomic_write_text(out / "config.json", json.dumps(to_jsonable(cfg), indent=1))
        atomic_write_text(out / "convention.json", json.dumps(CONVENTION, indent=1))
        atomic_write_text(out / "metrics.json", json.dumps(to_jsonable(metrics), indent=1))
        if writer is not None:
            writer.add_scalar("summary/p2plane_after", metrics.p2plane_median_after or 0.0, 0)
            writer.close()
    if not scene.exists():
        scene.update(input_kind="external", depth_source=DepthSource("results", scene.relative(npz)))
    scene.record_stage(STAGE, chash, [scene.align_dir / o for o in OUTPUTS], times["total"], inputs=inputs)
    return ReconstructOutputs(scene.align_dir, metrics)


def _nanmed(v: list) -> float | None:
    a = np.array([x for x in v if x is not None], dtype=float)
    return float(np.nanmedian(a)) if a.size and np.isfinite(a).any() else None


def _align(frames: list[FramePoints], preprocess: PreprocessConfig, icp: ICPConfig, deform: DeformConfig,
           global_opt: GlobalOptConfig, scale: float, writer: "SummaryWriter | None",
           times: dict[str, float]) -> tuple[AlignResult, GlobalOptStats | None]:
    """The sequential pass (per-frame figures to TensorBoard), then the global optimisation when enabled."""

    def log(i: int, rec: FrameMetrics) -> None:
        if writer is not None:
            for k in ("p2plane_before", "p2plane_after", "inlier_frac", "iters", "seconds"):
                if np.isfinite(getattr(rec, k)):
                    writer.add_scalar(f"icp/{k}", getattr(rec, k), rec.frame)

    bar = lambda it, total: console.progress(it, desc="align frames", total=total)  # noqa: E731
    res = sequential_align(frames, icp, deform, scale, preprocess.max_depth_jump, on_frame=log, progress=bar)
    times["icp"] = res.seconds
    glob = None
    if global_opt.enabled and len(frames) > 2:
        gbar = lambda it, total: console.progress(it, desc="global opt", total=total)  # noqa: E731
        glob = global_optimise(frames, res, icp, deform, global_opt, scale, preprocess.max_depth_jump, gbar)
        times["global_opt"] = glob.seconds
    return res, glob


def _fit_inverses(frames: list[FramePoints], res: AlignResult, inverse: InverseConfig,
                  scale: float) -> tuple[list[InverseField], RoundTripSummary]:
    """Inverse deformation of every frame; warns when an accepted frame's round trip exceeds the
    tolerance, naming the worst."""
    inverses, rt = zip(*(fit_inverse(f, st, inverse, scale) for f, st in zip(frames, res.states)))
    judged = res.accepted()[1:] or [0]  # frame 0 is the gauge: never deformed, its 0 says nothing
    ok = [rt[k] for k in judged]
    worst = max(ok, key=lambda r: r.p95)
    round_trip = RoundTripSummary(worst.p95, _nanmed([r.median for r in ok]), inverse.tolerance)
    if round_trip.p95_max > inverse.tolerance:
        console.warn(f"inverse deformation round trip p95 {round_trip.p95_max:.2e} of scene scale (frame "
                     f"{worst.frame}) exceeds tolerance {inverse.tolerance:.1e} (raise --inverse.resolution)")
    return list(inverses), round_trip


def _support(frames: list[FramePoints], res: AlignResult, icp: ICPConfig, max_jump: float,
             scale: float) -> tuple[np.ndarray, np.ndarray, SupportStats | None]:
    """(keep [M], xyz [M, 3]) of the model's voxels: the support filter (fuse.py) over the accepted
    frames, and where its consensus moves them."""
    xyz, _, nrm, w = res.model.arrays()
    if not icp.fuse.enabled:
        return np.ones(len(xyz), bool), xyz, None
    cams = [(res.states[k].A, frames[k].K, world_pointmap(frames[k], res.states[k], max_jump)) for k in res.accepted()]
    fused = support_filter(xyz, w, cams, icp.fuse, scale, nrm)
    return fused.keep, fused.xyz, fused.stats


def refined_c2w(frame: FramePoints, state: FrameState) -> np.ndarray:
    """A frame's refined camera: the pose that sees its aligned points X = A (x + δ(x)) at their own
    pixels (camera_refine.bearing_pnp), started from the rigid part of the Sim(3) x → X. Depth
    errors move points along their rays, so the bearings hold where the rigid fit trades rotation
    for warp. A alone is not the camera: the grid may carry part of the rigid motion."""
    P = len(frame.xyz)
    sub = np.arange(P)
    if P > PNP_POINTS:  # a fixed subset: 6 unknowns, thousands of points are plenty
        sub = np.sort(np.random.default_rng([0, frame.index]).choice(P, PNP_POINTS, replace=False))
    x = frame.xyz[sub]
    X = state.world(x)
    return bearing_pnp(X, frame.pix[sub], frame.K, rigid_c2w(x, X))


def _refine_cameras(frames: list[FramePoints], res: AlignResult, icp: ICPConfig,
                    scale: float) -> tuple[np.ndarray, BundleStats, DriftStats]:
    """Refined c2w [N, 4, 4] of every frame (its given one when rejected): each frame's reprojection
    fit, bundle-adjusted together (bundle.py), then drift-corrected (drift.py). With
    `move_placements` each accepted frame's placement moves with its camera (A ← G A) and the model
    is merged again from the moved frames, so the cameras still see the canonical points at their own
    pixels; without it (the default) the points stay put."""
    bad = set(res.rejected)
    given = np.stack([f.c2w_given for f in frames])
    fitted = np.stack([f.c2w_given if k in bad else refined_c2w(f, st)
                       for k, (f, st) in enumerate(zip(frames, res.states))])
    c2w, bundle = _bundle(frames, res, icp, scale, given, fitted)
    corrected, stats = correct_drift(given, c2w, res.accepted(), scale, icp.drift, [f.index for f in frames])
    if stats.applied and icp.drift.move_placements:
        model = VoxelModel(res.model.voxel)
        for k in res.accepted():
            st = res.states[k]
            st.A = world_correction(fitted[k], corrected[k]) @ st.A  # the fit's camera → the final one
            res.contributions[k] = merge_frame(model, frames[k], st)
        res.model = model
    return corrected, bundle, stats


def _bundle(frames: list[FramePoints], res: AlignResult, icp: ICPConfig, scale: float, given: np.ndarray,
            c2w: np.ndarray) -> tuple[np.ndarray, BundleStats]:
    """The accepted frames' cameras bundle-adjusted, with a centre prior of σ_c on the given centres
    (rescaled about frame 0's when the given path is in other units, as the drift correction does; the
    ICP's weight κ_c only switches it: 0 = none), the path then brought to the fitted path's size (the
    canonical cloud's units)."""
    acc = res.accepted()
    if not icp.bundle.enabled:
        return c2w, BundleStats(False, "disabled")
    if len(acc) < 2:
        return c2w, BundleStats(False, "fewer than 2 accepted frames")
    points = {k: res.states[k].world(frames[k].xyz) for k in acc}
    matches = verified_matches(frames, points, c2w, acc, icp.bundle, scale, icp.seed)
    prior = None
    if icp.centre_prior > 0:
        s = given_units_scale(given, c2w, [k for k in acc if k > 0], scale, icp.drift.units_tolerance)
        prior = given[0, :3, 3] + s * (given[:, :3, 3] - given[0, :3, 3])
    adjusted, stats = bundle_adjust(c2w, acc, np.stack([f.K for f in frames]), matches, prior,
                                    icp.centre_prior_sigma * scale, icp.bundle)
    stats.unlinked = [frames[k].index for k in stats.unlinked]
    return adjusted, stats


def _write_cameras(path: Path, frames: list[FramePoints], c2w: np.ndarray) -> None:
    """cameras_refined.json: each frame's camera from `_refine_cameras`, trajectory format."""
    from worldstereo.cameras import Camera, Trajectory, save_trajectory

    H, W = frames[0].depth.shape
    cams = [Camera(f.K.astype(np.float64), c2w[k], W, H) for k, f in enumerate(frames)]
    save_trajectory(Trajectory(cams, name="refined"), path)


def _write_canonical(path: Path, model: VoxelModel, keep: np.ndarray, xyz: np.ndarray) -> None:
    """canonical.ply: the model's voxels that passed the support filter, at `xyz` [M, 3] (the
    filter's consensus positions) (layout in CONVENTION)."""
    _, rgb, nrm, w = (a[keep] for a in model.arrays())
    xyz = xyz[keep]
    write_ply(path, {
        "x": xyz[:, 0].astype(np.float32), "y": xyz[:, 1].astype(np.float32), "z": xyz[:, 2].astype(np.float32),
        "nx": nrm[:, 0].astype(np.float32), "ny": nrm[:, 1].astype(np.float32), "nz": nrm[:, 2].astype(np.float32),
        "red": np.clip(rgb[:, 0] * 255 + 0.5, 0, 255).astype(np.uint8),
        "green": np.clip(rgb[:, 1] * 255 + 0.5, 0, 255).astype(np.uint8),
        "blue": np.clip(rgb[:, 2] * 255 + 0.5, 0, 255).astype(np.uint8),
        "conf": w.astype(np.float32), "frame": model.first_frame[keep].astype(np.int32),
    })


def _tb_writer(path: Path) -> "SummaryWriter":
    from torch.utils.tensorboard import SummaryWriter  # tensorboard is a dependency; torch's import is slow

    return SummaryWriter(str(path))
