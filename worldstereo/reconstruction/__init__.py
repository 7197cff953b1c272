"""The Python API: reconstruct_scene, ReconstructedScene, refine / optimize, export_mesh / export_point_cloud.

    from worldstereo.reconstruction import reconstruct_scene, export_mesh
    scene = reconstruct_scene("video.mp4", "trajectory.json", method="mvs")
    export_mesh(scene, "scene.glb")
"""

from worldstereo.reconstruction.export import export_mesh, export_point_cloud
from worldstereo.reconstruction.methods import reconstruct_scene, save_scene
from worldstereo.reconstruction.refine import optimize_textures, rebake_textures, refine_mesh
from worldstereo.reconstruction.store import load_scene
from worldstereo.reconstruction.types import Mesh, PointCloud, ReconstructedScene, ReconstructionConfig

__all__ = ["reconstruct_scene", "save_scene", "load_scene", "export_mesh", "export_point_cloud", "refine_mesh",
           "optimize_textures", "rebake_textures", "ReconstructedScene", "ReconstructionConfig", "Mesh", "PointCloud"]
