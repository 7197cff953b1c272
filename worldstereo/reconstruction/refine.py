"""refine_mesh (components, normals, holes, quadric simplification) and optimize_textures (seam
blending, detail enhancement, super-resolution), each reporting what it changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
from scipy import sparse

from worldstereo.errors import InputError
from worldstereo.reconstruction.types import Mesh, ReconstructedScene


def counts(mesh: Mesh) -> dict[str, int]:
    return {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces))}


def compact(mesh: Mesh, keep_faces: np.ndarray) -> Mesh:
    """The mesh with only the kept faces [F] bool and the vertices they use."""
    faces = mesh.faces[keep_faces]
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    pick = lambda a: None if a is None else a[used]  # noqa: E731
    return Mesh(mesh.vertices[used], remap[faces], mesh.normals[used], pick(mesh.colors), pick(mesh.uvs),
                mesh.refinement)


def weld(mesh: Mesh) -> Mesh:
    """Merge vertices at the same position (the UV atlas splits them along seams); drops the UVs."""
    _, first, inv = np.unique(np.round(mesh.vertices, 9), axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    faces = inv[mesh.faces]
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return Mesh(mesh.vertices[first], faces[ok], mesh.normals[first],
                None if mesh.colors is None else mesh.colors[first], None, mesh.refinement)


def remove_small_components(mesh: Mesh, min_fraction: float) -> Mesh:
    """Drop connected components (by shared vertices) with fewer faces than min_fraction of the largest."""
    if len(mesh.faces) == 0:
        return mesh
    from scipy.sparse.csgraph import connected_components

    F = len(mesh.faces)
    rows = np.repeat(np.arange(F), 3)
    inc = sparse.csr_matrix((np.ones(3 * F), (rows, mesh.faces.ravel())), shape=(F, len(mesh.vertices)))
    _, label = connected_components(inc @ inc.T, directed=False)
    size = np.bincount(label)
    return compact(mesh, size[label] >= min_fraction * size.max())


def smooth_normals(mesh: Mesh, iterations: int) -> Mesh:
    """Each vertex normal ← normalised mean of itself and its 1-ring neighbours, `iterations` times."""
    from worldstereo.reconstruction.fusion import vertex_normals

    n = vertex_normals(mesh.vertices, mesh.faces)
    e = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]])
    V = len(mesh.vertices)
    A = sparse.csr_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(V, V))
    A = A + sparse.identity(V, format="csr")
    for _ in range(iterations):
        n = A @ n
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-30
    return dataclasses.replace(mesh, normals=n)


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """Closed loops of directed boundary edges (edges used by one face, in that face's direction)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[cnt[inv.ravel()] == 1]
    nxt: dict[int, int] = {}
    for a, b in border:
        if a in nxt:  # a vertex where two holes touch: leave both open
            nxt[a] = -1
        else:
            nxt[int(a)] = int(b)
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen or nxt[start] < 0:
            continue
        loop, v = [], start
        while v not in seen and v in nxt and nxt[v] >= 0:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v == start and len(loop) >= 3:
            loops.append(loop)
    return loops


def fill_holes(mesh: Mesh, max_edges: int) -> tuple[Mesh, int]:
    """Close boundary loops of ≤ max_edges edges by a fan around their centroid (one new vertex,
    wound like the surrounding faces). Returns the mesh and the number of holes filled."""
    loops = [lp for lp in boundary_loops(mesh.faces) if len(lp) <= max_edges]
    if not loops:
        return mesh, 0
    verts, norms, cols = [mesh.vertices], [mesh.normals], [mesh.colors] if mesh.colors is not None else None
    faces = [mesh.faces]
    nv = len(mesh.vertices)
    for lp in loops:
        idx = np.array(lp)
        verts.append(mesh.vertices[idx].mean(0, keepdims=True))
        n = mesh.normals[idx].mean(0)
        norms.append((n / (np.linalg.norm(n) + 1e-30))[None])
        if cols is not None:
            cols.append(mesh.colors[idx].mean(0, keepdims=True).astype(np.uint8))
        # boundary edge a→b belongs to a face wound a→b; the fill face runs b→a
        faces.append(np.stack([np.roll(idx, -1), idx, np.full(len(idx), nv)], 1))
        nv += 1
    out = Mesh(np.concatenate(verts), np.concatenate(faces), np.concatenate(norms),
               None if cols is None else np.concatenate(cols), None, mesh.refinement)
    return out, len(loops)


def simplify(mesh: Mesh, vertex_fraction: float) -> Mesh:
    """Quadric error decimation (fast-simplification via trimesh) to about vertex_fraction of the
    vertices; vertex colours follow the nearest original vertex; UVs are dropped."""
    import trimesh
    from scipy.spatial import cKDTree

    from worldstereo.reconstruction.fusion import vertex_normals

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    out = tm.simplify_quadric_decimation(percent=1.0 - vertex_fraction)
    V, F = np.asarray(out.vertices, np.float64), np.asarray(out.faces, np.int64)
    colors = None
    if mesh.colors is not None:
        colors = mesh.colors[cKDTree(mesh.vertices).query(V)[1]]
    return Mesh(V, F, vertex_normals(V, F), colors, None, mesh.refinement)


def refine_mesh(mesh: Mesh, remove_outliers: bool = True, smooth_normals: bool = True, fill_holes: bool = True,
                simplify: float | None = None, min_component_fraction: float = 0.05, max_hole_edges: int = 32,
                smoothing_iterations: int = 2) -> Mesh:
    """A cleaned copy of the mesh; `refinement` lists each step's counts before / after.

    remove_outliers: drop components smaller than min_component_fraction of the largest (faces);
    fill_holes: close boundary loops of ≤ max_hole_edges edges; simplify: keep about this fraction of
    the vertices (quadric decimation, 0 < simplify ≤ 1). A UV-mapped mesh is first welded (vertices
    merged by position), so the result has no UVs: bake textures again after refining;
    smooth_normals: average vertex normals over the 1-ring `smoothing_iterations` times."""
    if simplify is not None and not 0.0 < simplify <= 1.0:
        raise InputError(None, f"refine_mesh: simplify must be in (0, 1] (got {simplify})")
    steps = []
    m = dataclasses.replace(mesh)

    def step(name: str, fn, **extra):
        nonlocal m
        before = counts(m)
        m = fn(m)
        steps.append({"step": name, "before": before, "after": counts(m), **extra})

    if m.uvs is not None:
        step("weld_uv_seams", weld)  # topology must be by position; the UVs go (rebake after)
    if remove_outliers:
        step("remove_outliers", lambda x: remove_small_components(x, min_component_fraction))
    if fill_holes:
        filled = []
        step("fill_holes", lambda x: (lambda r: filled.append(r[1]) or r[0])(_fill(x, max_hole_edges)))
        steps[-1]["holes_filled"] = filled[0]
    if simplify is not None and simplify < 1.0 and len(m.faces):
        step("simplify", lambda x: _simplify(x, simplify))
    if smooth_normals and len(m.faces):
        step("smooth_normals", lambda x: _smooth(x, smoothing_iterations))
    m.refinement = {"before": counts(mesh), "after": counts(m), "steps": steps}
    return m


_fill, _simplify, _smooth = fill_holes, simplify, smooth_normals  # refine_mesh's arguments shadow the names


# --------------------------------------------------------------------------- textures


def seam_pairs(mesh: Mesh) -> np.ndarray:
    """[S, 4] vertex indices (a1, b1, a2, b2): the two UV copies of each mesh edge cut by the atlas
    (same positions, different UV vertices), a1 / a2 and b1 / b2 at the same point."""
    _, pid = np.unique(np.round(mesh.vertices, 9), axis=0, return_inverse=True)
    pid = pid.ravel()
    e = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]])
    pe = pid[e]
    swap = pe[:, 0] > pe[:, 1]
    e[swap] = e[swap][:, ::-1]
    pe[swap] = pe[swap][:, ::-1]
    order = np.lexsort((pe[:, 1], pe[:, 0]))
    pe, e = pe[order], e[order]
    same = np.all(pe[1:] == pe[:-1], axis=1)
    i = np.flatnonzero(same)
    pairs = np.concatenate([e[i], e[i + 1]], axis=1)
    return pairs[np.any(pairs[:, :2] != pairs[:, 2:], axis=1)]


def _seam_samples(mesh: Mesh, pairs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel coordinates (x, y) [M, 2] float of points along each seam on both sides (side 1, side 2)."""
    uv = mesh.uvs
    L = np.linalg.norm(uv[pairs[:, 1]] - uv[pairs[:, 0]], axis=1) * size
    k = np.maximum(2, np.ceil(L).astype(int) + 1)
    idx = np.repeat(np.arange(len(pairs)), k)
    t = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)) / np.repeat(k - 1, k)
    side = []
    for a, b in ((0, 1), (2, 3)):
        p = uv[pairs[idx, a]] * (1 - t[:, None]) + uv[pairs[idx, b]] * t[:, None]
        side.append(np.stack([p[:, 0] * size - 0.5, (1 - p[:, 1]) * size - 0.5], 1))
    return side[0], side[1]


def _bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return cv2.remap(img.astype(np.float32), xy[:, 0:1].astype(np.float32), xy[:, 1:2].astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(len(xy), -1)


def seam_difference(mesh: Mesh, albedo: np.ndarray) -> float:
    """Mean |colour difference| (0..255 per channel) between the two sides of the atlas seams."""
    pairs = seam_pairs(mesh)
    if len(pairs) == 0:
        return 0.0
    s1, s2 = _seam_samples(mesh, pairs, albedo.shape[0])
    return float(np.abs(_bilinear(albedo, s1) - _bilinear(albedo, s2)).mean())


def blend_seams(mesh: Mesh, albedo: np.ndarray) -> np.ndarray:
    """Both sides of each seam (the 2×2 texels around each sample) set to the mean of the two sides."""
    pairs = seam_pairs(mesh)
    if len(pairs) == 0:
        return albedo
    s1, s2 = _seam_samples(mesh, pairs, albedo.shape[0])
    avg = 0.5 * (_bilinear(albedo, s1) + _bilinear(albedo, s2))
    out = albedo.astype(np.float32).copy()
    S = albedo.shape[0]
    for xy in (s1, s2):
        for dx in (0, 1):
            for dy in (0, 1):
                x = np.clip(np.floor(xy[:, 0]).astype(int) + dx, 0, S - 1)
                y = np.clip(np.floor(xy[:, 1]).astype(int) + dy, 0, S - 1)
                out[y, x] = avg
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def gradient_energy(img: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of the grey image (a sharpness figure)."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) if img.ndim == 3 else img.astype(np.float32)
    return float(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean())


def unsharp(img: np.ndarray, amount: float = 0.6, sigma: float = 1.5) -> np.ndarray:
    """img + amount · (img − Gaussian(img, sigma)) (unsharp masking)."""
    f = img.astype(np.float32)
    return np.clip(f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma)) + 0.5, 0, 255).astype(np.uint8)


def upscale(textures: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
    """Lanczos (albedo, normal renormalised) / nearest (roughness) upscaling by an integer factor."""
    out = {}
    for k, v in textures.items():
        S = v.shape[0] * factor
        interp = cv2.INTER_NEAREST if k == "roughness" else cv2.INTER_LANCZOS4
        up = cv2.resize(v, (S, S), interpolation=interp)
        if k == "normal":
            n = up.astype(np.float32) / 127.5 - 1.0
            n /= np.linalg.norm(n, axis=2, keepdims=True) + 1e-30
            up = np.clip((n + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        out[k] = up
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def super_resolve(tex: dict[str, np.ndarray], factor: int, sr_model_dir: str | Path | None) -> tuple[dict, dict]:
    """Maps upscaled by `factor` and the report. Albedo through the RRDBNet checkpoint of
    sr_model_dir when given (its native ×s output resampled to ×factor when s differs), else
    Lanczos-4; normal and roughness always classical (the model was trained on photographs)."""
    S = tex["albedo"].shape[0]
    out = upscale(tex, factor)
    report = {"size_before": S, "size_after": S * factor, "method": "lanczos4",
              "model": "none (no sr_model_dir given: classical Lanczos-4 upscale)"}
    if sr_model_dir is not None:
        from worldstereo.reconstruction.superres import load_sr_model, upscale_image

        model = load_sr_model(sr_model_dir)
        big = upscale_image(model, tex["albedo"])
        if model.scale != factor:
            interp = cv2.INTER_AREA if model.scale > factor else cv2.INTER_LANCZOS4
            big = cv2.resize(big, (S * factor, S * factor), interpolation=interp)
        out["albedo"] = big
        report.update(method="rrdbnet", model=f"{model.source} (×{model.scale}, {Path(sr_model_dir)})")
    back = cv2.resize(out["albedo"], (S, S), interpolation=cv2.INTER_AREA)
    report["round_trip_psnr_db"] = float(psnr(back, tex["albedo"]))
    return out, report


def optimize_textures(scene: ReconstructedScene, super_resolution: bool = False, seam_blending: bool = True,
                      enhance_details: bool = False, upscale_factor: int = 2, detail_amount: float = 0.6,
                      sr_model_dir: str | Path | None = None) -> ReconstructedScene:
    """A copy of the scene with improved maps; metadata["texture_optimization"] holds the figures:
    seam difference before / after, gradient energy before / after the unsharp mask, size before /
    after, the upscaler used and its round-trip PSNR (upscaled then area-downscaled vs the original).
    Super-resolution is Lanczos-4 unless sr_model_dir names a local folder with a Real-ESRGAN
    RRDBNet checkpoint (superres.py); nothing is downloaded."""
    if not scene.textures or scene.mesh.uvs is None:
        raise InputError(None, "optimize_textures: the scene has no textures (reconstruct with texture_resolution > 0)")
    tex = dict(scene.textures)
    report: dict = {}
    if seam_blending:
        before = seam_difference(scene.mesh, tex["albedo"])
        tex["albedo"] = blend_seams(scene.mesh, tex["albedo"])
        report["seam_blending"] = {"seam_difference_before": before,
                                   "seam_difference_after": seam_difference(scene.mesh, tex["albedo"])}
    if enhance_details:
        before = gradient_energy(tex["albedo"])
        tex["albedo"] = unsharp(tex["albedo"], detail_amount)
        report["enhance_details"] = {"gradient_energy_before": before, "gradient_energy_after": gradient_energy(tex["albedo"])}
    if super_resolution:
        tex, report["super_resolution"] = super_resolve(tex, upscale_factor, sr_model_dir)
    meta = {**scene.metadata, "texture_optimization": report}
    return dataclasses.replace(scene, textures=tex, metadata=meta)


def rebake_textures(scene: ReconstructedScene, mesh: Mesh | None = None, texture_resolution: int | None = None
                    ) -> ReconstructedScene:
    """A copy of the scene with `mesh` (e.g. refine_mesh's result; default: the scene's own) given a
    new UV atlas and maps baked from the scene's frames at texture_resolution (default: as before)."""
    from worldstereo.reconstruction.texture import bake_textures

    if scene.frames is None:
        raise InputError(None, "rebake_textures: the scene holds no frames to bake from")
    mesh = mesh if mesh is not None else scene.mesh
    if mesh.uvs is not None:
        mesh = weld(mesh)
    size = int(texture_resolution or (scene.textures["albedo"].shape[0] if scene.textures else 1024))
    voxel = float(scene.metadata.get("voxel_size", 0.0)) or 0.01 * float(np.ptp(mesh.vertices, axis=0).max())
    uv_mesh, textures, tq = bake_textures(mesh, scene.frames, scene.point_cloud, size, 2.0 * voxel)
    metrics = {**scene.metadata.get("quality_metrics", {}), "texture_quality": tq}
    return dataclasses.replace(scene, mesh=uv_mesh, textures=textures,
                               metadata={**scene.metadata, "quality_metrics": metrics})
