"""Depth → surface: MVS depth with a multi-view agreement filter, a sparse-band TSDF, a signed
distance from an oriented cloud, marching cubes (scikit-image), and the fused point cloud."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from worldstereo.depth.mvs import MVSConfig, agreement_count, mvs_sequence, neighbour_indices
from worldstereo.geometry import project_points, unproject_depth
from worldstereo.reconstruction.types import Frames, Mesh, PointCloud

TRUNCATION_VOXELS = 4.0  # TSDF truncation band, in voxels


# --------------------------------------------------------------------------- depth


def filter_by_views(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, groups: list[np.ndarray],
                    neighbours: int, min_views: int, rel_tol: float) -> np.ndarray:
    """depth [N, H, W] with pixels seen consistently by fewer than min_views views set to 0."""
    out = depth.copy()
    for idx in groups:
        for a, i in enumerate(idx):
            others = [int(idx[b]) for b in neighbour_indices(a, len(idx), neighbours)]
            out[i][agreement_count(depth, K, c2w, int(i), others, rel_tol) < min_views] = 0.0
    return out


def sweep_groups(frames: Frames) -> list[np.ndarray]:
    """Index lists of views swept against each other (all views, or one list per panorama face)."""
    if frames.group is None:
        return [np.arange(len(frames.images))]
    return [np.flatnonzero(frames.group == g) for g in np.unique(frames.group)]


def mvs_depths(frames: Frames, planes: int, neighbours: int, depth_range: tuple[float, float] | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Plane-sweep depth and confidence [N, H, W] of every view (worldstereo.depth.mvs), without its
    own consistency step (the caller filters over min_views)."""
    near, far = depth_range if depth_range is not None else (None, None)
    cfg = MVSConfig(planes=planes, neighbours=neighbours, consistency=0.0, near=near, far=far)
    depth = np.zeros(frames.images.shape[:3], np.float32)
    conf = np.zeros_like(depth)
    K, c2w = frames.K, frames.c2w
    for idx in sweep_groups(frames):
        depth[idx], conf[idx] = mvs_sequence(frames.images[idx], K[idx], c2w[idx], cfg)
    return depth, conf


# --------------------------------------------------------------------------- volumes


@dataclass
class Volume:
    """A dense grid: origin [3] (centre of voxel (0,0,0)), voxel side, shape (X, Y, Z)."""

    origin: np.ndarray
    voxel: float
    shape: tuple[int, int, int]

    def centres(self, ijk: np.ndarray) -> np.ndarray:
        return self.origin + ijk * self.voxel


def volume_around(points: np.ndarray, cells_long_side: int, pad_voxels: float) -> Volume:
    """Grid over the 1st–99th percentile box of points with `cells_long_side` cells on its long side."""
    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    voxel = float(max(hi - lo)) / cells_long_side
    lo, hi = lo - pad_voxels * voxel, hi + pad_voxels * voxel
    shape = tuple(int(x) for x in np.ceil((hi - lo) / voxel).astype(int) + 1)
    return Volume(lo, voxel, shape)  # type: ignore[arg-type]


def band_voxels(vol: Volume, points: np.ndarray, radius_voxels: float) -> np.ndarray:
    """[M, 3] int indices of voxels within radius of any point (dilated occupancy)."""
    ijk = np.rint((points - vol.origin) / vol.voxel).astype(np.int64)
    ok = np.all((ijk >= 0) & (ijk < np.array(vol.shape)), axis=1)
    occ = np.zeros(vol.shape, bool)
    occ[tuple(ijk[ok].T)] = True
    r = int(np.ceil(radius_voxels))
    ball = np.linalg.norm(np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1], axis=0) <= radius_voxels
    return np.argwhere(ndimage.binary_dilation(occ, structure=ball))


def tsdf_fuse(vol: Volume, ijk: np.ndarray, frames: Frames, depth: np.ndarray, trunc: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projective TSDF over the band voxels ijk [M, 3]: tsdf [M] in −1..1 (positive in front of the
    surface), weight [M] (views that saw the voxel in front of or within trunc behind the surface),
    colour [M, 3] float 0..255 (mean over views where |sdf| < trunc)."""
    X = vol.centres(ijk)
    acc, w = np.zeros(len(X)), np.zeros(len(X))
    col, wc = np.zeros((len(X), 3)), np.zeros(len(X))
    H, W = depth.shape[1:]
    for i, cam in enumerate(frames.cameras):
        uv, z = project_points(X, cam.K, cam.w2c)
        u = np.rint(np.nan_to_num(uv[:, 0], nan=-1)).astype(np.int64)
        v = np.rint(np.nan_to_num(uv[:, 1], nan=-1)).astype(np.int64)
        inside = np.flatnonzero((u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0))
        d = depth[i][v[inside], u[inside]]
        sdf = d - z[inside]
        ok = (d > 0) & (sdf > -trunc)
        sel = inside[ok]
        acc[sel] += np.clip(sdf[ok] / trunc, -1.0, 1.0)
        w[sel] += 1.0
        near = ok & (np.abs(sdf) < trunc)
        col[inside[near]] += frames.images[i][v[inside[near]], u[inside[near]]]
        wc[inside[near]] += 1.0
    return acc / np.maximum(w, 1e-12), w, col / np.maximum(wc, 1e-12)[:, None]


def cloud_sdf(vol: Volume, ijk: np.ndarray, cloud: PointCloud, trunc: float) -> tuple[np.ndarray, ...]:
    """Signed distance to the tangent plane of the nearest oriented point (Hoppe et al. 1992):
    sdf(x) = n·(x − p). Returns tsdf [M] in −1..1, weight [M] (1 where |x − p| < trunc), colour [M, 3]."""
    X = vol.centres(ijk)
    dist, nn = cKDTree(cloud.points).query(X)
    sdf = np.einsum("ij,ij->i", cloud.normals[nn], X - cloud.points[nn])
    w = (dist < trunc).astype(np.float64)
    return np.clip(sdf / trunc, -1, 1), w, cloud.colors[nn].astype(np.float64)


def marching_cubes(vol: Volume, ijk: np.ndarray, tsdf: np.ndarray, weight: np.ndarray, colour: np.ndarray,
                   min_weight: float = 1.0) -> Mesh:
    """Zero level set of the band TSDF (scikit-image marching cubes; voxels with weight < min_weight,
    e.g. seen by one noisy view only, are masked out);
    vertex colours trilinear over the observed corner voxels; faces wound outward (towards +sdf)."""
    from skimage import measure

    seen = weight >= max(min_weight, 1e-9)
    F = np.ones(vol.shape, np.float32)
    F[tuple(ijk[seen].T)] = tsdf[seen]
    mask = np.zeros(vol.shape, bool)
    mask[tuple(ijk[seen].T)] = True
    if not (F[mask] < 0).any() or not (F[mask] > 0).any():
        return empty_mesh()
    verts, faces, _, _ = measure.marching_cubes(F, 0.0, mask=mask, gradient_direction="ascent",
                                                allow_degenerate=False)
    # a vertex lies on a grid edge; keep faces whose edges join two observed voxels (the mask alone
    # still lets cubes with unobserved corners through, whose default +1 makes false walls)
    lo_end = np.floor(verts + 1e-6).astype(np.int64)
    hi_end = np.minimum(np.ceil(verts - 1e-6).astype(np.int64), np.array(vol.shape) - 1)
    vert_ok = mask[tuple(lo_end.T)] & mask[tuple(hi_end.T)]
    faces = faces[np.all(vert_ok[faces], axis=1)]
    used = np.unique(faces)
    remap = np.full(len(verts), -1, np.int64)
    remap[used] = np.arange(len(used))
    verts, faces = verts[used], remap[faces]
    C = np.zeros(vol.shape + (3,), np.float32)
    C[tuple(ijk[seen].T)] = colour[seen]
    colors = trilinear(C, mask.astype(np.float32), verts)
    V = vol.origin + verts.astype(np.float64) * vol.voxel
    F_out = faces.astype(np.int64)[:, ::-1].copy()
    return Mesh(V, F_out, vertex_normals(V, F_out), np.clip(colors + 0.5, 0, 255).astype(np.uint8))


def trilinear(values: np.ndarray, weight: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Weight-normalised trilinear interpolation of values [X, Y, Z, C] at grid coordinates [N, 3]."""
    base = np.floor(xyz).astype(np.int64)
    f = xyz - base
    out = np.zeros((len(xyz), values.shape[-1]))
    wsum = np.zeros(len(xyz))
    hi = np.array(weight.shape) - 1
    for corner in np.ndindex(2, 2, 2):
        c = np.clip(base + corner, 0, hi)
        t = np.prod(np.where(corner, f, 1 - f), axis=1) * weight[tuple(c.T)]
        out += t[:, None] * values[tuple(c.T)]
        wsum += t
    return out / np.maximum(wsum, 1e-12)[:, None]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals [V, 3] (unit; +z for isolated vertices)."""
    fn = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(norm > 0, n / np.maximum(norm, 1e-30), [0.0, 0.0, 1.0])


def empty_mesh() -> Mesh:
    return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8))


# --------------------------------------------------------------------------- point cloud


def depth_cloud(frames: Frames, depth: np.ndarray) -> PointCloud:
    """Every depth pixel > 0 as a world point with its colour and a camera-facing normal."""
    from worldstereo.align.preprocess import depth_normals

    pts, cols, nrms = [], [], []
    for i, cam in enumerate(frames.cameras):
        cam_pts = unproject_depth(depth[i], cam.K)
        n = depth_normals(cam_pts)
        ok = (depth[i] > 0) & np.all(np.isfinite(n), axis=-1)
        pts.append(cam_pts[ok] @ cam.c2w[:3, :3].T + cam.c2w[:3, 3])
        nrms.append(n[ok] @ cam.c2w[:3, :3].T)
        cols.append(frames.images[i][ok])
    if not pts:
        return PointCloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros((0, 3)))
    return PointCloud(np.concatenate(pts), np.concatenate(cols).astype(np.uint8), np.concatenate(nrms))


def downsample_cloud(cloud: PointCloud, voxel: float) -> PointCloud:
    """Mean point, colour and (renormalised) normal per voxel; voxel ≤ 0 keeps the cloud."""
    if voxel <= 0 or len(cloud) == 0:
        return cloud
    keys = np.floor(cloud.points / voxel).astype(np.int64)
    _, inv, cnt = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    mean = lambda a: np.stack([np.bincount(inv, a[:, k]) for k in range(3)], 1) / cnt[:, None]  # noqa: E731
    n = mean(cloud.normals)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-30
    return PointCloud(mean(cloud.points), np.clip(mean(cloud.colors.astype(np.float64)) + 0.5, 0, 255).astype(np.uint8), n)


def keep_near_surface(cloud: PointCloud, mesh: Mesh, max_dist: float) -> PointCloud:
    """Points within max_dist of a mesh vertex (drops isolated points off the fused surface)."""
    if len(mesh.vertices) == 0 or len(cloud) == 0:
        return cloud
    d, _ = cKDTree(mesh.vertices).query(cloud.points, distance_upper_bound=max_dist)
    ok = np.isfinite(d)
    return PointCloud(cloud.points[ok], cloud.colors[ok], cloud.normals[ok])
