"""scene.npz: a ReconstructedScene's arrays, written by save_scene and read back by load_scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.errors import InputError
from worldstereo.reconstruction.types import Frames, Mesh, PointCloud, ReconstructedScene


def scene_arrays(scene: ReconstructedScene) -> dict[str, np.ndarray]:
    """Flat arrays: mesh_*, cloud_*, tex_<name>, cam_K / cam_c2w / cam_size, frames, metadata (JSON)."""
    m, c = scene.mesh, scene.point_cloud
    out = {"mesh_vertices": m.vertices, "mesh_faces": m.faces, "mesh_normals": m.normals,
           "cloud_points": c.points, "cloud_colors": c.colors, "cloud_normals": c.normals,
           "cam_K": np.stack([k.K for k in scene.cameras]), "cam_c2w": np.stack([k.c2w for k in scene.cameras]),
           "cam_size": np.array([[k.width, k.height] for k in scene.cameras]),
           "metadata": np.array(json.dumps(scene.metadata, default=float))}
    if m.colors is not None:
        out["mesh_colors"] = m.colors
    if m.uvs is not None:
        out["mesh_uvs"] = m.uvs
    for k, v in scene.textures.items():
        out[f"tex_{k}"] = v
    if scene.frames is not None:
        out["frames"] = scene.frames.images
    return out


def load_scene(folder: str | Path) -> ReconstructedScene:
    """The scene saved by reconstruct_scene / save_scene in `folder` (its scene.npz)."""
    path = Path(folder) / "scene.npz"
    if not path.exists():
        raise InputError(folder, "no scene.npz: run reconstruct_scene (or utils.export mesh) on the scene first")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        mesh = Mesh(a["mesh_vertices"], a["mesh_faces"], a["mesh_normals"], a.get("mesh_colors"), a.get("mesh_uvs"))
        cloud = PointCloud(a["cloud_points"], a["cloud_colors"], a["cloud_normals"])
        cams = [Camera(K, c2w, int(s[0]), int(s[1])) for K, c2w, s in zip(a["cam_K"], a["cam_c2w"], a["cam_size"])]
        meta = json.loads(str(a["metadata"]))
    except (KeyError, ValueError, OSError) as e:
        raise InputError(path, f"not a readable reconstruction ({e.__class__.__name__}: {e})")
    textures = {k[4:]: v for k, v in a.items() if k.startswith("tex_")}
    frames = Frames(a["frames"], cams) if "frames" in a else None
    return ReconstructedScene(mesh, cloud, textures, cams, meta, frames)
