"""reconstruct_scene: frames + cameras → depth → fused surface (mvs / neural / hybrid) → textures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from worldstereo import console
from worldstereo.cameras import Trajectory
from worldstereo.errors import InputError
from worldstereo.reconstruction import fusion, quality
from worldstereo.reconstruction.inputs import frames_from_panorama_video, frames_from_scene, frames_from_video
from worldstereo.reconstruction.texture import bake_textures
from worldstereo.reconstruction.types import (DENSITY_VOXEL_FACTOR, Frames, Mesh, PointCloud, ReconstructedScene,
                                              ReconstructionConfig, check_literal, Method)


def load_frames(video_path: str | Path, trajectory: Trajectory | str | Path | None, cfg: ReconstructionConfig,
                panoramic: bool) -> Frames:
    """A scene folder (video_path is a directory) or a video + its trajectory."""
    from worldstereo.camera import load_trajectory

    if Path(video_path).is_dir():
        return frames_from_scene(video_path, cfg.resolution, cfg.max_frames)
    if trajectory is None:
        raise InputError(video_path, "a video needs camera_trajectory (a Trajectory or a trajectory file)")
    if not isinstance(trajectory, Trajectory):
        trajectory = load_trajectory(trajectory)
    if panoramic:
        return frames_from_panorama_video(video_path, trajectory, cfg.resolution, cfg.max_frames)
    return frames_from_video(video_path, trajectory, cfg.resolution, cfg.max_frames)


def frame_depth(frames: Frames, cfg: ReconstructionConfig, source: Path) -> tuple[np.ndarray, dict]:
    """Depth [N, H, W] to fuse: MVS (filled from a scene's own depth where MVS has none, that depth
    first refined with the scene's cache and memory bank) or the scene's depth as is; then, if
    asked, only pixels agreeing over mvs_min_views views. Also the memory refinement's report."""
    from worldstereo.reconstruction.memory_depth import refine_with_memory

    report: dict = {"used": False, "reason": "depth_estimation=False" if not cfg.depth_estimation
                    else "not a scene folder"}
    if not cfg.depth_estimation:
        if frames.depth_m is None:
            raise InputError(source, "a video carries no depth: set depth_estimation=True (MVS) or pass a scene folder")
        depth = frames.depth_m
    else:
        depth, _ = fusion.mvs_depths(frames, cfg.mvs_planes, cfg.mvs_neighbours, cfg.mvs_depth_range)
        if frames.depth_m is not None:
            own, report = refine_with_memory(frames, frames.depth_m, source)
            depth = np.where(depth > 0, depth, own).astype(np.float32)
    if cfg.mvs_geometric_consistency and cfg.mvs_min_views > 1:
        depth = fusion.filter_by_views(depth, frames.K, frames.c2w, fusion.sweep_groups(frames),
                                       cfg.mvs_neighbours, cfg.mvs_min_views, cfg.consistency_tolerance)
    if not (depth > 0).any():
        raise InputError(source, "no reliable depth in any frame (too little texture or camera baseline; "
                                 "try mvs_depth_range, fewer mvs_min_views or more frames)")
    return depth, report


def grid_cells(frames: Frames, depth: np.ndarray, cloud: PointCloud, cfg: ReconstructionConfig) -> int:
    """Cells on the scene's long side: resolution / 4, but no finer than 2 pixels' footprint at the
    median depth (a finer grid only meshes the depth noise)."""
    lo, hi = np.percentile(cloud.points, 1, axis=0), np.percentile(cloud.points, 99, axis=0)
    footprint = 2.0 * float(np.median(depth[depth > 0])) / float(np.median(frames.K[:, 0, 0]))
    return int(max(8, min(cfg.resolution // 4, np.ceil(max(hi - lo) / max(footprint, 1e-12)))))


def tsdf_mesh(frames: Frames, depth: np.ndarray, cloud: PointCloud, cfg: ReconstructionConfig) -> tuple[Mesh, float]:
    """Marching cubes of the TSDF of the depth maps; returns the mesh and the voxel side."""
    vol = fusion.volume_around(cloud.points, grid_cells(frames, depth, cloud, cfg), fusion.TRUNCATION_VOXELS + 1)
    trunc = fusion.TRUNCATION_VOXELS * vol.voxel
    ijk = fusion.band_voxels(vol, cloud.points, fusion.TRUNCATION_VOXELS + 1)
    tsdf, w, col = fusion.tsdf_fuse(vol, ijk, frames, depth, trunc)
    min_weight = min(cfg.mvs_min_views, len(frames.images)) if cfg.mvs_geometric_consistency else 1
    return fusion.marching_cubes(vol, ijk, tsdf, w, col, min_weight), vol.voxel


def neural_cloud(frames: Frames, depth: np.ndarray, cfg: ReconstructionConfig) -> tuple[PointCloud, dict]:
    """Non-rigid frame-to-model alignment (worldstereo.align) of the depth frames → canonical cloud."""
    from worldstereo.align.deform import DeformConfig
    from worldstereo.align.icp import ICPConfig, sequential_align
    from worldstereo.align.preprocess import PreprocessConfig, frame_points
    from worldstereo.io.results import FrameResults

    w2c = np.stack([c.w2c[:3] for c in frames.cameras]).astype(np.float32)
    r = FrameResults(depth, (depth > 0).astype(np.float32), w2c, frames.K.astype(np.float32), frames.images)
    pre = PreprocessConfig(points_per_frame=cfg.neural_batch_size)
    fps = [frame_points(r, i, pre) for i in range(len(r)) if (depth[i] > 0).sum() >= 100]
    if len(fps) < 1:
        raise InputError(None, "neural: no frame has 100 reliable depth pixels to align")
    icp = ICPConfig()
    scale = float(np.median(fps[0].xyz[:, 2]))
    res = sequential_align(fps, icp, DeformConfig(), scale, pre.max_depth_jump)
    xyz, rgb, nrm, _ = res.model.arrays()
    cloud = PointCloud(xyz.astype(np.float64), np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), nrm.astype(np.float64))
    after = [p.p2plane_after for p in res.per_frame if np.isfinite(p.p2plane_after)]
    stats = {"frames_aligned": len(fps), "seconds": res.seconds,
             "p2plane_median_after": float(np.median(after)) if after else None}
    return cloud, stats


def fitted_depth(frames: Frames, depth: np.ndarray, aligned: PointCloud, cfg: ReconstructionConfig
                 ) -> tuple[np.ndarray, dict]:
    """Depth [N, H, W] rendered from 2DGS discs fitted (neural.py) to the frames, seeded at the
    aligned cloud; the figures of the fit."""
    from worldstereo.reconstruction.neural import FitConfig, fit_gaussians, rendered_depths

    fit = fit_gaussians(frames, depth, aligned, FitConfig(iterations=cfg.neural_iterations,
                                                          batch_pixels=cfg.neural_batch_size))
    rendered = rendered_depths(fit.model, frames)
    if not (rendered > 0).any():
        raise InputError(None, "neural: the fitted Gaussians render no opaque pixel (try more neural_iterations)")
    return rendered, fit.summary()


def cloud_mesh(cloud: PointCloud, cells: int) -> tuple[Mesh, float]:
    """Marching cubes of the signed distance to the oriented cloud (Hoppe)."""
    vol = fusion.volume_around(cloud.points, cells, fusion.TRUNCATION_VOXELS + 1)
    trunc = 2.0 * vol.voxel  # the cloud is already fused: a narrow band keeps thin parts apart
    ijk = fusion.band_voxels(vol, cloud.points, 2.0)
    tsdf, w, col = fusion.cloud_sdf(vol, ijk, cloud, trunc)
    return fusion.marching_cubes(vol, ijk, tsdf, w, col), vol.voxel


def surface(frames: Frames, depth: np.ndarray, cfg: ReconstructionConfig) -> tuple[Mesh, PointCloud, float, dict]:
    """The method's mesh and point cloud (before cleanup), the voxel side and method figures."""
    dense = fusion.depth_cloud(frames, depth)
    info: dict = {"depth_points": len(dense)}
    if cfg.method == "mvs":
        mesh, voxel = tsdf_mesh(frames, depth, dense, cfg)
        return mesh, dense, voxel, info
    aligned, info["alignment"] = neural_cloud(frames, depth, cfg)
    if cfg.method == "neural":
        if cfg.neural_iterations == 0:  # no Gaussian fit: the signed distance of the aligned cloud
            mesh, voxel = cloud_mesh(aligned, grid_cells(frames, depth, dense, cfg))
            return mesh, aligned, voxel, info
        fitted, info["gaussian_fit"] = fitted_depth(frames, depth, aligned, cfg)
        mesh, voxel = tsdf_mesh(frames, fitted, fusion.depth_cloud(frames, fitted), cfg)
        return mesh, aligned, voxel, info
    mesh, voxel = tsdf_mesh(frames, depth, dense, cfg)  # hybrid: the neural cloud checked against the MVS surface
    kept = fusion.keep_near_surface(aligned, mesh, 2.0 * voxel)
    info["hybrid_agreement"] = len(kept) / max(len(aligned), 1)
    if cfg.neural_iterations == 0 or len(kept) == 0:
        return mesh, kept, voxel, info
    fitted, info["gaussian_fit"] = fitted_depth(frames, depth, kept, cfg)  # the model seeded by the checked cloud
    combined, info["hybrid_depth"] = checked_depth(fitted, depth, cfg.consistency_tolerance)
    mesh, voxel = tsdf_mesh(frames, combined, fusion.depth_cloud(frames, combined), cfg)
    return mesh, kept, voxel, info


def checked_depth(rendered: np.ndarray, mvs: np.ndarray, rel_tol: float) -> tuple[np.ndarray, dict]:
    """The model's rendered depth checked by the MVS depth [N, H, W]: where MVS has depth and the
    two differ by more than rel_tol · MVS, MVS wins; where MVS has none, the model fills in."""
    has_mvs, has_model = mvs > 0, rendered > 0
    agree = has_mvs & has_model & (np.abs(rendered - mvs) <= rel_tol * np.maximum(mvs, 1e-9))
    out = np.where(agree | (has_model & ~has_mvs), rendered, mvs).astype(np.float32)
    n = max(int(has_mvs.sum()), 1)
    return out, {"agree_with_mvs": float(agree.sum() / n), "mvs_kept": float((has_mvs & ~agree).sum() / n),
                 "filled_by_model_px": int((has_model & ~has_mvs).sum())}


def quality_metrics(mesh: Mesh, frames: Frames, depth: np.ndarray, cfg: ReconstructionConfig, voxel: float,
                    texture_quality: float) -> dict[str, float]:
    """The four 0..1 figures of metadata["quality_metrics"] (definitions in quality.py)."""
    return {
        "completeness": quality.completeness(mesh, frames),
        "geometric_consistency": quality.geometric_consistency(mesh, frames, depth, cfg.consistency_tolerance, voxel),
        "texture_quality": texture_quality,
        "multiview_consistency": quality.multiview_consistency(mesh, frames, 2.0 * voxel),
    }


def reconstruct_scene(video_path: str | Path, camera_trajectory: Trajectory | str | Path | None = None,
                      output_path: str | Path | None = None, method: Method | None = None,
                      resolution: int | None = None, config: ReconstructionConfig | None = None,
                      panoramic_input: bool = False) -> ReconstructedScene:
    """Reconstruct a textured mesh and a point cloud from a video with known cameras, or from a
    scene folder (video_path = the folder; its exports/npz/results.npz gives frames, cameras, depth).

    `method` / `resolution` override the config's. output_path (default: <scene>/reconstruction for a
    scene folder, nothing for a video) receives scene.npz, mesh.glb, point_cloud.ply, metadata.json.

        scene = reconstruct_scene("video.mp4", load_trajectory("trajectory.json"), method="mvs")
        print(len(scene.mesh.vertices), scene.metadata["quality_metrics"])
    """
    from worldstereo.reconstruction.refine import refine_mesh

    cfg = config or ReconstructionConfig()
    if method is not None:
        check_literal("method", method, Method)
    cfg = ReconstructionConfig(**{**cfg.to_dict(), **({"method": method} if method else {}),
                                  **({"resolution": resolution} if resolution else {})})
    times: dict[str, float] = {}
    t = time.perf_counter()
    frames = load_frames(video_path, camera_trajectory, cfg, panoramic_input)
    times["load"] = time.perf_counter() - t
    t = time.perf_counter()
    depth, memory_report = frame_depth(frames, cfg, Path(video_path))
    times["depth"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh, cloud, voxel, info = surface(frames, depth, cfg)
    times["surface"] = time.perf_counter() - t
    t = time.perf_counter()
    if cfg.mesh_cleanup and len(mesh.faces):
        mesh = refine_mesh(mesh, remove_outliers=cfg.outlier_removal, smooth_normals=cfg.smoothing_iterations > 0,
                           fill_holes=True, smoothing_iterations=cfg.smoothing_iterations)
    if cfg.outlier_removal:
        cloud = fusion.keep_near_surface(cloud, mesh, 3.0 * voxel)
    cloud = fusion.downsample_cloud(cloud, DENSITY_VOXEL_FACTOR[cfg.point_cloud_density] * voxel)
    times["cleanup"] = time.perf_counter() - t
    t = time.perf_counter()
    depth_tol = 2.0 * voxel
    textures, tex_quality = {}, 0.0
    if cfg.texture_resolution > 0 and len(mesh.faces):
        mesh, textures, tex_quality = bake_textures(mesh, frames, cloud, cfg.texture_resolution, depth_tol)
    times["textures"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics = quality_metrics(mesh, frames, depth, cfg, voxel, tex_quality)
    times["metrics"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    meta = {"config": cfg.to_dict(), "method": cfg.method, "timings": times, "quality_metrics": metrics,
            "voxel_size": voxel, "frames": len(frames.images), "working_size": list(frames.images.shape[2:0:-1]),
            "source": str(video_path), "memory_depth": memory_report, **info}
    scene = ReconstructedScene(mesh, cloud, textures, list(frames.cameras), meta, frames)
    out = output_path if output_path is not None else (Path(video_path) / "reconstruction"
                                                      if Path(video_path).is_dir() else None)
    if out is not None:
        save_scene(scene, out)
    console.info(f"[reconstruct] {cfg.method}: {len(mesh.vertices)} vertices, {len(cloud)} points, "
                 f"{times['total']:.1f} s")
    return scene


def save_scene(scene: ReconstructedScene, folder: str | Path) -> Path:
    """scene.npz (arrays, reloadable by load_scene), mesh.glb, point_cloud.ply, metadata.json."""
    from worldstereo.io.atomic import atomic_dir
    from worldstereo.reconstruction.export import export_mesh, export_point_cloud
    from worldstereo.reconstruction.store import scene_arrays

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / "scene.npz").exists())):
        raise InputError(folder, "output_path exists and is not a reconstruction folder (it would be replaced)")
    with atomic_dir(folder) as tmp:
        with open(tmp / "scene.npz", "wb") as f:
            np.savez_compressed(f, **scene_arrays(scene))
        (tmp / "metadata.json").write_text(json.dumps(scene.metadata, indent=1, default=float))
        if len(scene.mesh.faces):
            export_mesh(scene, tmp / "mesh.glb", format="glb", include_textures=bool(scene.textures))
        export_point_cloud(scene, tmp / "point_cloud.ply", format="ply")
    return folder
