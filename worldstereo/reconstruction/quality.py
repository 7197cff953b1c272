"""Quality figures of a reconstruction, each in 0..1 (definitions in docs/reconstruction_api.md)."""

from __future__ import annotations

import numpy as np

from worldstereo.geometry import project_points
from worldstereo.reconstruction.texture import zbuffer
from worldstereo.reconstruction.types import Frames, Mesh


def surface_samples(mesh: Mesh, per_face: int = 1) -> np.ndarray:
    """Vertices plus face centroids [V + F, 3]: a denser sampling for coverage tests."""
    return np.concatenate([mesh.vertices, mesh.vertices[mesh.faces].mean(axis=1)])


def completeness(mesh: Mesh, frames: Frames, cell_px: int = 4) -> float:
    """Mean over frames of the fraction of cell_px × cell_px image cells that some surface sample
    projects into (the share of the image the mesh explains)."""
    if len(mesh.faces) == 0:
        return 0.0
    X = surface_samples(mesh)
    out = []
    for cam in frames.cameras:
        uv, z = project_points(X, cam.K, cam.w2c)
        ok = (z > 0) & np.all(np.isfinite(uv), axis=1)
        gw, gh = -(-cam.width // cell_px), -(-cam.height // cell_px)
        cu = np.floor((uv[ok, 0] + 0.5) / cell_px).astype(np.int64)
        cv_ = np.floor((uv[ok, 1] + 0.5) / cell_px).astype(np.int64)
        inside = (cu >= 0) & (cu < gw) & (cv_ >= 0) & (cv_ < gh)
        out.append(len(np.unique(cv_[inside] * gw + cu[inside])) / (gw * gh))
    return float(np.mean(out))


def geometric_consistency(mesh: Mesh, frames: Frames, depth: np.ndarray, rel_tol: float, abs_tol: float) -> float:
    """Of the (vertex, frame) pairs where the frame has depth d at the vertex's pixel and the vertex
    is not hidden behind it (z ≤ d + tol), the fraction with |z − d| ≤ tol, tol = max(rel_tol·d, abs_tol)."""
    if len(mesh.vertices) == 0:
        return 0.0
    seen = agree = 0
    H, W = depth.shape[1:]
    for i, cam in enumerate(frames.cameras):
        uv, z = project_points(mesh.vertices, cam.K, cam.w2c)
        u = np.rint(np.nan_to_num(uv[:, 0], nan=-1)).astype(np.int64)
        v = np.rint(np.nan_to_num(uv[:, 1], nan=-1)).astype(np.int64)
        ok = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0)
        d = depth[i][v[ok], u[ok]]
        tol = np.maximum(rel_tol * d, abs_tol)
        obs = (d > 0) & (z[ok] <= d + tol)
        seen += int(obs.sum())
        agree += int((obs & (np.abs(z[ok] - d) <= tol)).sum())
    return agree / seen if seen else 0.0


def multiview_consistency(mesh: Mesh, frames: Frames, depth_tol: float, colour_tol: float = 0.1) -> float:
    """Of the (vertex, frame) pairs where the vertex is visible (z-buffer of surface samples), the
    fraction whose pixel colour is within colour_tol (max |ΔRGB| in 0..1) of the vertex's median
    colour over the frames that see it. Vertices seen by one frame only are not counted."""
    if len(mesh.vertices) == 0:
        return 0.0
    X = surface_samples(mesh)
    V = len(mesh.vertices)
    obs = np.full((len(frames.cameras), V, 3), np.nan, np.float32)
    for i, cam in enumerate(frames.cameras):
        zb = zbuffer(X, cam)
        uv, z = project_points(mesh.vertices, cam.K, cam.w2c)
        u = np.rint(np.nan_to_num(uv[:, 0], nan=-1)).astype(np.int64)
        v = np.rint(np.nan_to_num(uv[:, 1], nan=-1)).astype(np.int64)
        ok = np.flatnonzero((u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height) & (z > 0))
        vis = ok[z[ok] <= zb[v[ok], u[ok]] + depth_tol]
        obs[i, vis] = frames.images[i][v[vis], u[vis]] / 255.0
    n_seen = np.isfinite(obs[..., 0]).sum(axis=0)
    multi = n_seen >= 2
    if not multi.any():
        return 0.0
    o = obs[:, multi]
    med = np.nanmedian(o, axis=0)
    dev = np.abs(o - med[None]).max(axis=2)  # NaN where the frame does not see the vertex
    valid = np.isfinite(dev)
    return float((dev[valid] <= colour_tol).mean())
