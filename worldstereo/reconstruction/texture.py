"""Textures: UV atlas (xatlas), texel rasterisation, albedo baked from the frames by visibility and
view angle, tangent-space normal map from the fused cloud's normals, constant roughness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldstereo.geometry import project_points
from worldstereo.reconstruction.types import Frames, Mesh, PointCloud

ROUGHNESS = 0.9
"""Roughness written into every material: a constant (matte), not estimated from the frames."""
VIEW_WEIGHT_POWER = 4.0
"""Albedo blend weight of a view = cos(view angle)^power: head-on views dominate, grazing ones fade."""
GUTTER_TEXELS = 4
MAX_CHARTS_HINT = 100
"""xatlas chart area is capped at total area / this: unbounded charts made xatlas ~10× slower here
(20k faces: 16 s vs 1.6 s on 2 shared cores) for fewer seams."""
"""Chart borders are dilated this far into empty texels so bilinear sampling does not pull in black."""


def uv_atlas(mesh: Mesh, resolution: int) -> Mesh:
    """The mesh with a UV atlas from xatlas: vertices split along chart seams (vmapping), uvs [V, 2]
    in OpenGL convention (v up). Colours and normals follow their original vertex."""
    import xatlas

    if len(mesh.faces) == 0:
        return Mesh(mesh.vertices, mesh.faces, mesh.normals, mesh.colors, np.zeros((0, 2)))
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32), mesh.normals.astype(np.float32))
    tri = mesh.vertices[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    charts = xatlas.ChartOptions()
    charts.max_chart_area = float(area / MAX_CHARTS_HINT)
    charts.max_iterations = 1
    pack = xatlas.PackOptions()
    pack.resolution = int(resolution)
    pack.padding = 2
    atlas.generate(charts, pack)
    vmap, faces, uvs = atlas[0]
    uv = uvs.astype(np.float64).copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # xatlas: v down (image rows); ours: v up
    return Mesh(mesh.vertices[vmap], faces.astype(np.int64), mesh.normals[vmap],
                None if mesh.colors is None else mesh.colors[vmap], uv, mesh.refinement)


@dataclass
class Texels:
    """Texels covered by the atlas: rows / cols [T], face [T], barycentrics [T, 3] of a size² map."""

    rows: np.ndarray
    cols: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    size: int

    def interpolate(self, mesh: Mesh, values: np.ndarray) -> np.ndarray:
        """Per-vertex values [V, C] → per-texel [T, C]."""
        tri = values[mesh.faces[self.face]]  # [T, 3, C]
        return np.einsum("tk,tkc->tc", self.bary, tri)


def rasterise_uv(mesh: Mesh, size: int, chunk: int = 2_000_000) -> Texels:
    """Texel centres inside each UV triangle (barycentric test over each face's texel box)."""
    p = np.stack([mesh.uvs[:, 0] * size - 0.5, (1.0 - mesh.uvs[:, 1]) * size - 0.5], 1)[mesh.faces]  # [F,3,2]
    lo = np.clip(np.floor(p.min(1)).astype(np.int64), 0, size - 1)
    hi = np.clip(np.ceil(p.max(1)).astype(np.int64), 0, size - 1)
    ext = hi - lo + 1
    count = ext[:, 0] * ext[:, 1]
    out = []
    starts = np.concatenate([[0], np.cumsum(count)])
    f_all = np.repeat(np.arange(len(mesh.faces)), count)
    for s in range(0, int(starts[-1]), chunk):
        f = f_all[s:s + chunk]
        k = np.arange(s, s + len(f)) - starts[f]
        x = lo[f, 0] + k % ext[f, 0]
        y = lo[f, 1] + k // ext[f, 0]
        a, b, c = p[f, 0], p[f, 1], p[f, 2]
        den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
        den = np.where(np.abs(den) < 1e-12, 1e-12, den)
        l0 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / den
        l1 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / den
        bary = np.stack([l0, l1, 1 - l0 - l1], 1)
        ok = np.all(bary >= -1e-6, axis=1)
        out.append((y[ok], x[ok], f[ok], bary[ok]))
    rows, cols, face, bary = (np.concatenate(z) for z in zip(*out))
    # a texel on a shared edge is kept once (the first face)
    _, first = np.unique(rows * size + cols, return_index=True)
    return Texels(rows[first], cols[first], face[first], np.clip(bary[first], 0, 1), size)


def pixels(points: np.ndarray, cam) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest pixel (u, v) [N] int, depth z [N] and an in-image-and-in-front mask [N] of world points."""
    uv, z = project_points(points, cam.K, cam.w2c)
    u = np.rint(np.nan_to_num(uv[:, 0], nan=-1)).astype(np.int64)
    v = np.rint(np.nan_to_num(uv[:, 1], nan=-1)).astype(np.int64)
    return u, v, z, (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height) & (z > 0)


def zbuffer_from(u: np.ndarray, v: np.ndarray, z: np.ndarray, ok: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest depth [H, W] of points at pixels (u, v) (inf where none)."""
    zb = np.full(height * width, np.inf)
    np.minimum.at(zb, v[ok] * width + u[ok], z[ok])
    return zb.reshape(height, width)


def zbuffer(points: np.ndarray, cam) -> np.ndarray:
    """Nearest depth [H, W] of points splatted to their pixel in a Camera (inf where none)."""
    return zbuffer_from(*pixels(points, cam), cam.width, cam.height)


def view_weights(X: np.ndarray, N: np.ndarray, cam, depth_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A view's blend weight [T] for surface points X with normals N: cos^p of the view angle where
    visible (in the image, facing the camera, not behind the points' own z-buffer by more than
    depth_tol), and the pixel (u, v) of each point."""
    u, v, z, inside = pixels(X, cam)
    zb = zbuffer_from(u, v, z, inside, cam.width, cam.height)
    u, v = np.clip(u, 0, cam.width - 1), np.clip(v, 0, cam.height - 1)
    ray = cam.center - X
    cos = np.einsum("ij,ij->i", N, ray) / (np.linalg.norm(ray, axis=1) + 1e-30)
    visible = inside & (cos > 0.05) & (z <= zb[v, u] + depth_tol)
    return np.where(visible, cos, 0.0) ** VIEW_WEIGHT_POWER, u, v


def bake_albedo(mesh: Mesh, texels: Texels, frames: Frames, depth_tol: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo [S, S, 3] uint8 = per texel, the cos^p-weighted mean colour over the views that see it.
    Also returns the best cos per texel [T] (0 = unseen; the texture_quality metric) and the covered
    mask [S, S]. Unseen texels take the vertex colour."""
    X = texels.interpolate(mesh, mesh.vertices)
    N = texels.interpolate(mesh, mesh.normals)
    N /= np.linalg.norm(N, axis=1, keepdims=True) + 1e-30
    acc, wsum, best = np.zeros((len(X), 3)), np.zeros(len(X)), np.zeros(len(X))
    for i, cam in enumerate(frames.cameras):
        w, u, v = view_weights(X, N, cam, depth_tol)
        acc += w[:, None] * frames.images[i][v, u]
        wsum += w
        best = np.maximum(best, w ** (1.0 / VIEW_WEIGHT_POWER))
    col = acc / np.maximum(wsum, 1e-12)[:, None]
    if mesh.colors is not None:
        fallback = texels.interpolate(mesh, mesh.colors.astype(np.float64))
        col = np.where((wsum > 0)[:, None], col, fallback)
    img = np.zeros((texels.size, texels.size, 3), np.float32)
    img[texels.rows, texels.cols] = col
    covered = np.zeros((texels.size, texels.size), bool)
    covered[texels.rows, texels.cols] = True
    return dilate(np.clip(img + 0.5, 0, 255).astype(np.uint8), covered, GUTTER_TEXELS), best, covered


def dilate(img: np.ndarray, covered: np.ndarray, steps: int) -> np.ndarray:
    """Fill empty texels next to covered ones with the mean of their covered neighbours, `steps` rings."""
    import cv2

    out = img.astype(np.float32)
    have = covered.astype(np.float32)
    for _ in range(steps):
        s = cv2.boxFilter(out * have[..., None], -1, (3, 3), normalize=False)
        n = cv2.boxFilter(have, -1, (3, 3), normalize=False)
        grow = (have == 0) & (n > 0)
        out[grow] = s[grow] / n[grow][:, None]
        have = np.maximum(have, grow.astype(np.float32))
    return np.clip(out + 0.5 if img.dtype == np.uint8 else out, 0, 255).astype(img.dtype)


def face_tangents(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Per-face tangent and bitangent [F, 3] (dP/du, dP/dv) from positions and UVs."""
    P, T = mesh.vertices[mesh.faces], mesh.uvs[mesh.faces]
    e1, e2 = P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]
    d1, d2 = T[:, 1] - T[:, 0], T[:, 2] - T[:, 0]
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(r) < 1e-20, 1e-20, r)
    t = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) / r[:, None]
    b = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) / r[:, None]
    return t, b


def bake_normal_map(mesh: Mesh, texels: Texels, cloud: PointCloud, covered: np.ndarray) -> np.ndarray:
    """Tangent-space normal map [S, S, 3] uint8 (glTF / OpenGL: +v bitangent): at each texel, the
    normal of the nearest fused cloud point (finer than the mesh's interpolated normals) in the
    texel's tangent frame; flat (128, 128, 255) where the cloud has nothing near."""
    from scipy.spatial import cKDTree

    X = texels.interpolate(mesh, mesh.vertices)
    N = texels.interpolate(mesh, mesh.normals)
    N /= np.linalg.norm(N, axis=1, keepdims=True) + 1e-30
    detail = N.copy()
    if len(cloud):
        _, nn = cKDTree(cloud.points).query(X)
        cand = cloud.normals[nn]
        detail = np.where((np.einsum("ij,ij->i", cand, N) > 0.3)[:, None], cand, N)
    t, b = face_tangents(mesh)
    T = t[texels.face] - N * np.einsum("ij,ij->i", t[texels.face], N)[:, None]
    T /= np.linalg.norm(T, axis=1, keepdims=True) + 1e-30
    B = np.cross(N, T) * np.sign(np.einsum("ij,ij->i", np.cross(N, T), b[texels.face]))[:, None]
    ts = np.stack([np.einsum("ij,ij->i", detail, T), np.einsum("ij,ij->i", detail, B),
                   np.einsum("ij,ij->i", detail, N)], 1)
    ts /= np.linalg.norm(ts, axis=1, keepdims=True) + 1e-30
    img = np.full((texels.size, texels.size, 3), (128, 128, 255), np.uint8)
    img[texels.rows, texels.cols] = np.clip((ts * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)
    return dilate(img, covered, GUTTER_TEXELS)


def bake_textures(mesh: Mesh, frames: Frames, cloud: PointCloud, size: int, depth_tol: float
                  ) -> tuple[Mesh, dict[str, np.ndarray], float]:
    """Atlas + albedo + normal + roughness maps at size². Returns the UV mesh, the maps and the
    texture_quality figure (mean best cos of the view angle over covered texels, 0 where unseen)."""
    uv_mesh = uv_atlas(mesh, size)
    if len(uv_mesh.faces) == 0:
        return uv_mesh, {}, 0.0
    tex = rasterise_uv(uv_mesh, size)
    albedo, best, covered = bake_albedo(uv_mesh, tex, frames, depth_tol)
    normal = bake_normal_map(uv_mesh, tex, cloud, covered)
    rough = np.full((size, size), int(round(ROUGHNESS * 255)), np.uint8)
    return uv_mesh, {"albedo": albedo, "normal": normal, "roughness": rough}, float(best.mean()) if len(best) else 0.0
