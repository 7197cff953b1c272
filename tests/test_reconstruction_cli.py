"""python -m utils.export mesh / points on a scene folder, and the issue's Python snippets as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from box_room import cameras, render, write_inputs, write_panorama_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_export(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "utils.export", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory) -> Path:
    """A scene folder with only exports/npz/results.npz (exact depth of the analytic room)."""
    from worldstereo.io.results import FrameResults, save_results

    root = tmp_path_factory.mktemp("scene")
    K, poses = cameras(6, 96, 72, 70.0)
    imgs, depths = zip(*(render(K, c, 96, 72) for c in poses))
    w2c = np.stack([np.linalg.inv(c)[:3] for c in poses]).astype(np.float32)
    (root / "exports" / "npz").mkdir(parents=True)
    save_results(root / "exports" / "npz" / "results.npz",
                 FrameResults(np.stack(depths).astype(np.float32), np.ones((6, 72, 96), np.float32), w2c,
                              np.repeat(K[None], 6, 0).astype(np.float32), np.stack(imgs)))
    return root


def test_cli_mesh_and_points(scene_folder):
    import laspy
    import pygltflib

    from worldstereo.reconstruction import load_scene

    r = run_export("mesh", "--scene", scene_folder, "--format", "glb", "--texture-resolution", "128")
    assert r.returncode == 0, r.stderr
    saved = load_scene(scene_folder / "reconstruction")
    g = pygltflib.GLTF2().load(str(scene_folder / "exports" / "mesh.glb"))
    prim = g.meshes[0].primitives[0]
    assert g.accessors[prim.attributes.POSITION].count == len(saved.mesh.vertices)
    assert g.accessors[prim.indices].count == 3 * len(saved.mesh.faces)
    assert f"{len(saved.mesh.vertices)} vertices" in r.stdout
    from box_room import box_distance

    assert np.median(box_distance(saved.mesh.vertices)) < 0.01  # the scene's exact depth, fused
    r = run_export("points", "--scene", scene_folder, "--format", "las")  # reuses the saved reconstruction
    assert r.returncode == 0, r.stderr
    assert len(laspy.read(str(scene_folder / "exports" / "points.las")).points) == len(saved.point_cloud)


def test_cli_bad_scene_is_one_line(tmp_path):
    r = run_export("mesh", "--scene", tmp_path / "nope", "--format", "glb")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'nope'}: scene folder not found"
    r = run_export("mesh", "--scene", tmp_path, "--format", "obj")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("not a scene folder with exports/npz/results.npz (run run_pipeline.py first)")
    assert list(tmp_path.iterdir()) == []


ISSUE_SNIPPET = '''
from worldstereo.reconstruction import reconstruct_scene, export_mesh, export_point_cloud, refine_mesh, optimize_textures, ReconstructionConfig
from worldstereo.camera import load_trajectory

trajectory = load_trajectory("trajectory.json")        # ours, WorldStereo camera.json, Uni3C, NeRF transforms.json
scene = reconstruct_scene(video_path="generated_video.mp4", camera_trajectory=trajectory,
                          output_path="./reconstruction", method="neural", resolution=512)
print(f"Reconstructed {len(scene.mesh.vertices)} vertices")
print(f"Point cloud size: {len(scene.point_cloud.points)}")
export_mesh(scene, "scene.obj", format="obj", include_textures=True, texture_resolution=2048)
export_mesh(scene, "scene.gltf", format="gltf", include_textures=True)
export_point_cloud(scene, "scene.ply", format="ply", include_colors=True, include_normals=True)
config = ReconstructionConfig(method="hybrid", resolution=1024, depth_estimation=True, point_cloud_density="high",
                              neural_iterations=10000, neural_batch_size=8192, mvs_min_views=3,
                              mvs_geometric_consistency=True, mesh_cleanup=True, outlier_removal=True,
                              smoothing_iterations=5)
scene = reconstruct_scene(video_path="video.mp4", camera_trajectory=trajectory, output_path="./reconstruction", config=config)
metrics = scene.metadata["quality_metrics"]   # completeness, geometric_consistency, texture_quality, multiview_consistency, all 0..1
refined = refine_mesh(scene.mesh, remove_outliers=True, smooth_normals=True, fill_holes=True, simplify=0.8)
optimized = optimize_textures(scene, super_resolution=True, seam_blending=True, enhance_details=True)
export_mesh(optimized, "final_scene.gltf", format="gltf", include_textures=True, texture_resolution=4096)
scene = reconstruct_scene(video_path="pano_video.mp4", camera_trajectory=trajectory, output_path="./pano", panoramic_input=True)
'''


@pytest.mark.slow
def test_issue_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    import trimesh

    gt = write_inputs(tmp_path, n=6)
    (tmp_path / "video.mp4").rename(tmp_path / "generated_video.mp4")
    write_inputs(tmp_path, n=6)  # video.mp4 again (same frames)
    write_panorama_video(tmp_path / "pano_video.mp4", gt["c2w"])
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(ISSUE_SNIPPET, "issue_14_snippet", "exec"), ns)
    out = capsys.readouterr().out
    assert "Reconstructed " in out and "Point cloud size: " in out
    assert all(0 <= v <= 1 for v in ns["metrics"].values()) and len(ns["metrics"]) == 4
    assert ns["refined"].refinement["after"]["vertices"] < ns["refined"].refinement["before"]["vertices"]
    assert ns["optimized"].metadata["texture_optimization"]["super_resolution"]["size_after"] == 2048
    m = trimesh.load(tmp_path / "scene.obj", process=False, maintain_order=True)
    assert len(m.faces) > 100 and m.visual.material.image.size == (2048, 2048)
    for f in ("scene.gltf", "scene.ply", "final_scene.gltf", "final_scene_gltf_albedo.png", "pano/scene.npz",
              "reconstruction/mesh.glb"):
        assert (tmp_path / f).exists(), f
    pano = ns["scene"]
    assert pano.metadata["frames"] == 4 * 6 and len(pano.mesh.faces) > 100
    from box_room import box_distance
    assert np.median(box_distance(pano.mesh.vertices)) < 0.05
