"""Typed hand-offs of the reconstruction API: Mesh, PointCloud, ReconstructedScene, ReconstructionConfig."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.errors import InputError

Method = Literal["mvs", "neural", "hybrid"]
Density = Literal["low", "medium", "high"]

# voxel side of the point cloud relative to the mesh voxel (high keeps every fused depth sample)
DENSITY_VOXEL_FACTOR: dict[str, float] = {"low": 2.0, "medium": 1.0, "high": 0.0}


@dataclass
class Mesh:
    """A triangle mesh in world coordinates (OpenCV axes, the trajectory's world frame).

    vertices [V, 3] float64, faces [F, 3] int64 (counter-clockwise seen from outside), normals
    [V, 3] unit, colors [V, 3] uint8 or None, uvs [V, 2] in 0..1 (OpenGL / OBJ convention: v up,
    image row 0 is v = 1) or None. `refinement` holds what refine_mesh did (counts before / after)."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    colors: np.ndarray | None = None
    uvs: np.ndarray | None = None
    refinement: dict | None = None

    def __len__(self) -> int:
        return len(self.vertices)


@dataclass
class PointCloud:
    """points [N, 3] float64 world, colors [N, 3] uint8, normals [N, 3] unit (facing the cameras)."""

    points: np.ndarray
    colors: np.ndarray
    normals: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class ReconstructionConfig:
    """Settings of `reconstruct_scene`. See docs/reconstruction_api.md for what each method does."""

    method: Method = "mvs"
    """mvs: plane-sweep depth + consistency filter + TSDF + marching cubes; neural: non-rigid
    alignment of the depth frames (worldstereo.align), 2DGS discs fitted to the frames from the
    aligned cloud, TSDF of their rendered depth; hybrid: the neural cloud checked against the MVS
    surface seeds the fit, whose rendered depth, checked by the MVS depth, is fused."""
    resolution: int = 512
    """Working size: frames are downscaled so their long side is at most this; the TSDF grid has
    resolution / 4 voxels along the scene's longest side."""
    depth_estimation: bool = True
    """Estimate depth by MVS. A video has no depth, so it needs True; a scene folder with
    results.npz uses its depth as is when False, and fills MVS holes with it when True."""
    point_cloud_density: Density = "medium"
    """high: every consistent depth sample; medium: one per mesh voxel; low: one per 2 voxels."""
    neural_iterations: int = 300
    """neural / hybrid: cap on the steps of the Gaussian fit (2DGS discs seeded at the aligned cloud;
    it stops earlier on a loss plateau); 0 = no fit (neural: mesh from the aligned cloud's signed
    distance; hybrid: the MVS TSDF mesh)."""
    neural_batch_size: int = 8192
    """neural / hybrid: depth points sampled per frame for the alignment, and pixels rendered per
    step of the Gaussian fit (a random crop of one frame of about this many pixels)."""
    mvs_min_views: int = 2
    """A depth pixel is kept when it agrees with at least this many views (itself included)."""
    mvs_geometric_consistency: bool = True
    """Apply the multi-view agreement filter (False keeps every plane-sweep depth)."""
    mvs_planes: int = 48
    """Depth planes of the sweep."""
    mvs_neighbours: int = 4
    """Source frames per reference frame in the sweep and in the consistency check."""
    mvs_depth_range: tuple[float, float] | None = None
    """(near, far) of the plane sweep in scene units; None: triangulated from tracked corners."""
    consistency_tolerance: float = 0.02
    """Relative depth difference under which two views agree."""
    mesh_cleanup: bool = True
    """Run refine_mesh (outlier components, small holes) on the marching-cubes mesh."""
    outlier_removal: bool = True
    """Remove small disconnected components (part of mesh_cleanup) and isolated cloud points."""
    smoothing_iterations: int = 2
    """Iterations of vertex-normal smoothing in the cleanup."""
    texture_resolution: int = 1024
    """Side of the baked albedo / normal / roughness maps (0: no textures)."""
    max_frames: int = 60
    """Frames used at most (evenly spaced over the video)."""

    def __post_init__(self) -> None:
        check_literal("method", self.method, Method)
        check_literal("point_cloud_density", self.point_cloud_density, Density)
        if int(self.neural_iterations) < 0:
            raise InputError(None, f"ReconstructionConfig.neural_iterations must be ≥ 0 (got {self.neural_iterations})")
        for name in ("resolution", "neural_batch_size", "mvs_min_views", "mvs_planes",
                     "mvs_neighbours", "max_frames"):
            if int(getattr(self, name)) < 1:
                raise InputError(None, f"ReconstructionConfig.{name} must be ≥ 1 (got {getattr(self, name)})")
        if self.resolution < 32:
            raise InputError(None, f"ReconstructionConfig.resolution must be ≥ 32 (got {self.resolution})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_literal(name: str, value: Any, options: Any) -> None:
    """One-line InputError when `value` is not one of the Literal's options."""
    allowed = get_args(options)
    if value not in allowed:
        raise InputError(None, f"{name} must be one of {', '.join(map(repr, allowed))} (got {value!r})")


@dataclass
class Frames:
    """The views a reconstruction works from: images [N, H, W, 3] uint8 and their cameras."""

    images: np.ndarray
    cameras: list[Camera]
    depth_m: np.ndarray | None = None  # [N, H, W] given depth (scene folder), 0 = none
    group: np.ndarray | None = None  # [N] sweep sequence of each view (panorama faces); None = one

    @property
    def K(self) -> np.ndarray:
        return np.stack([c.K for c in self.cameras])

    @property
    def c2w(self) -> np.ndarray:
        return np.stack([c.c2w for c in self.cameras])


@dataclass
class ReconstructedScene:
    """What reconstruct_scene returns: mesh, point cloud, textures, cameras, and metadata
    (`config`, `timings` in seconds, `quality_metrics` in 0..1, `voxel_size`, `method`)."""

    mesh: Mesh
    point_cloud: PointCloud
    textures: dict[str, np.ndarray]
    cameras: list[Camera]
    metadata: dict[str, Any] = field(default_factory=dict)
    frames: Frames | None = None
    """The frames the textures were baked from (kept so exports can rebake at another size)."""
