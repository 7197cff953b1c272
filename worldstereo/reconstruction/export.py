"""export_mesh (obj / ply / gltf / glb / usd / usdz / fbx) and export_point_cloud (ply / pcd / xyz /
las) through trimesh, pygltflib, usd-core, laspy and Assimp.

Axes: by default files are written Y-up for engines and DCC tools (OpenGL: x right, y up, z towards
the viewer), i.e. (x, −y, −z) of our OpenCV world — a rotation, so faces keep their winding.
`axes="opencv"` writes the world coordinates unchanged."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from worldstereo import console
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_path
from worldstereo.reconstruction.types import ReconstructedScene, check_literal
from worldstereo.reconstruction.texture import ROUGHNESS

MeshFormat = Literal["obj", "ply", "gltf", "glb", "usd", "usdz", "fbx"]
CloudFormat = Literal["ply", "pcd", "xyz", "las"]
Axes = Literal["opengl", "opencv"]
OPENCV_TO_OPENGL = np.array([1.0, -1.0, -1.0])
ASSIMP_HINT = "FBX export needs the Assimp command-line tool: apt-get install -y assimp-utils"


@dataclass
class ExportMesh:
    """What a writer gets: arrays in the file's axes, optional UVs (v up) and maps."""

    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    normals: np.ndarray  # [V, 3]
    colors: np.ndarray | None  # [V, 3] uint8
    uvs: np.ndarray | None  # [V, 2], v up
    albedo: np.ndarray | None  # [S, S, 3] uint8
    normal_map: np.ndarray | None  # [S, S, 3] uint8
    tangents: np.ndarray | None = None  # [V, 4]: xyz = dP/du, w = ±1 handedness (bitangent = w · n × t)


def vertex_tangents(mesh) -> np.ndarray:
    """Per-vertex tangents [V, 4] (glTF TANGENT) of a UV mesh: face dP/du summed, orthogonalised
    against the normal; w = +1 when n × t points along dP/dv (v up), else −1 — the frame the normal
    map was baked in."""
    from worldstereo.reconstruction.texture import face_tangents

    t_f, b_f = face_tangents(mesh)
    t, b = np.zeros_like(mesh.vertices), np.zeros_like(mesh.vertices)
    for k in range(3):
        np.add.at(t, mesh.faces[:, k], t_f)
        np.add.at(b, mesh.faces[:, k], b_f)
    n = mesh.normals
    t = t - n * np.einsum("ij,ij->i", t, n)[:, None]
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    # a vertex with no usable dP/du gets any unit vector perpendicular to its normal
    alt = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    t = np.where(norm > 1e-12, t / np.maximum(norm, 1e-30), alt / np.linalg.norm(alt, axis=1, keepdims=True))
    w = np.where(np.einsum("ij,ij->i", np.cross(n, t), b) < 0, -1.0, 1.0)
    return np.concatenate([t, w[:, None]], axis=1)


def png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)
    return buf.tobytes()


def resample(img: np.ndarray, size: int, is_normal: bool = False) -> np.ndarray:
    """A square map at size² (area when shrinking, Lanczos when growing; normals renormalised)."""
    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if size < img.shape[0] else cv2.INTER_LANCZOS4
    out = cv2.resize(img, (size, size), interpolation=interp)
    if is_normal:
        n = out.astype(np.float32) / 127.5 - 1.0
        n /= np.linalg.norm(n, axis=2, keepdims=True) + 1e-30
        out = np.clip((n + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return out


def prepare_mesh(scene: ReconstructedScene, include_textures: bool, texture_resolution: int | None,
                 axes: Axes) -> ExportMesh:
    """The scene's mesh in the requested axes, with maps resampled to texture_resolution."""
    m = scene.mesh
    flip = OPENCV_TO_OPENGL if axes == "opengl" else np.ones(3)
    textured = include_textures and bool(scene.textures) and m.uvs is not None
    if include_textures and not textured:
        console.warn("export: the scene has no baked textures; writing vertex colours instead")
    albedo = normal = None
    if textured:
        size = int(texture_resolution or scene.textures["albedo"].shape[0])
        albedo = resample(scene.textures["albedo"], size)
        normal = resample(scene.textures["normal"], size, True) if "normal" in scene.textures else None
    tangents = None
    if textured:
        tangents = vertex_tangents(m)
        tangents[:, :3] *= flip  # a rotation: the handedness w stays
    return ExportMesh(m.vertices * flip, m.faces.astype(np.int64), m.normals * flip, m.colors,
                      m.uvs if textured else None, albedo, normal, tangents)


# --------------------------------------------------------------------------- mesh writers


def write_obj(em: ExportMesh, path: Path) -> None:
    """OBJ + MTL (+ <stem>_obj_albedo.png, map_Kd) with trimesh; vertex colours in `v` lines when untextured."""
    import trimesh
    from PIL import Image

    if em.uvs is not None:
        # white diffuse: many viewers multiply map_Kd by Kd (trimesh's default Kd is 0.4 grey)
        mat = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(em.albedo), name=f"{path.stem}_obj_albedo",
                                                     diffuse=(255, 255, 255, 255), ambient=(255, 255, 255, 255),
                                                     specular=(0, 0, 0, 255))
        visual = trimesh.visual.TextureVisuals(uv=em.uvs, material=mat)
    else:
        visual = trimesh.visual.ColorVisuals(vertex_colors=em.colors) if em.colors is not None else None
    tm = trimesh.Trimesh(em.vertices, em.faces, vertex_normals=em.normals, visual=visual, process=False)
    text, files = trimesh.exchange.obj.export_obj(tm, include_normals=True, return_texture=True,
                                                  mtl_name=f"{path.stem}.mtl")
    for name, data in files.items():
        with atomic_path(path.parent / name) as tmp:
            tmp.write_bytes(data)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_ply_mesh(em: ExportMesh, path: Path) -> None:
    """Binary PLY with vertex normals and colours (trimesh)."""
    import trimesh

    colors = em.colors if em.colors is not None else np.full((len(em.vertices), 3), 200, np.uint8)
    tm = trimesh.Trimesh(em.vertices, em.faces, vertex_normals=em.normals, vertex_colors=colors, process=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(trimesh.exchange.ply.export_ply(tm, encoding="binary", vertex_normal=True))


class _Blob:
    """The glTF binary buffer being built: 4-byte aligned bufferViews."""

    def __init__(self):
        self.data = bytearray()
        self.views: list = []

    def add(self, raw: bytes, target: int | None = None) -> int:
        import pygltflib as g

        while len(self.data) % 4:
            self.data.append(0)
        self.views.append(g.BufferView(buffer=0, byteOffset=len(self.data), byteLength=len(raw), target=target))
        self.data += raw
        return len(self.views) - 1


def gltf_document(em: ExportMesh, bin_uri: str | None, image_uris: dict[str, str] | None) -> tuple:
    """A pygltflib GLTF2 for the mesh (one node, one primitive) and its binary buffer. Textures go
    in the buffer when image_uris is None (glb), else as the given external files."""
    import pygltflib as g

    blob, acc = _Blob(), []

    def accessor(arr: np.ndarray, ctype: int, kind: str, target: int | None, minmax: bool = False) -> int:
        a = g.Accessor(bufferView=blob.add(arr.tobytes(), target), componentType=ctype, count=len(arr), type=kind)
        if minmax:
            a.min, a.max = arr.min(0).tolist(), arr.max(0).tolist()
        acc.append(a)
        return len(acc) - 1

    attrs = g.Attributes(POSITION=accessor(em.vertices.astype(np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER, True),
                         NORMAL=accessor(em.normals.astype(np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER))
    mat = g.Material(name="surface", doubleSided=False, pbrMetallicRoughness=g.PbrMetallicRoughness(
        metallicFactor=0.0, roughnessFactor=ROUGHNESS))
    images, textures = [], []
    if em.uvs is not None:
        st = np.stack([em.uvs[:, 0], 1.0 - em.uvs[:, 1]], 1).astype(np.float32)  # glTF: v down
        attrs.TEXCOORD_0 = accessor(st, g.FLOAT, g.VEC2, g.ARRAY_BUFFER)
        if em.tangents is not None and em.normal_map is not None:
            attrs.TANGENT = accessor(em.tangents.astype(np.float32), g.FLOAT, g.VEC4, g.ARRAY_BUFFER)
        for key, img in (("albedo", em.albedo), ("normal", em.normal_map)):
            if img is None:
                continue
            if image_uris is None:
                images.append(g.Image(bufferView=blob.add(png_bytes(img)), mimeType="image/png"))
            else:
                images.append(g.Image(uri=image_uris[key]))
            textures.append(g.Texture(source=len(images) - 1, sampler=0))
        mat.pbrMetallicRoughness.baseColorTexture = g.TextureInfo(index=0)
        if em.normal_map is not None:
            mat.normalTexture = g.NormalMaterialTexture(index=1)
    elif em.colors is not None:
        attrs.COLOR_0 = accessor(em.colors.astype(np.float32) / 255.0, g.FLOAT, g.VEC3, g.ARRAY_BUFFER)
    idx = accessor(em.faces.astype(np.uint32).reshape(-1), g.UNSIGNED_INT, g.SCALAR, g.ELEMENT_ARRAY_BUFFER)
    doc = g.GLTF2(
        asset=g.Asset(version="2.0", generator="worldstereo"), scene=0, scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(mesh=0, name="reconstruction")],
        meshes=[g.Mesh(primitives=[g.Primitive(attributes=attrs, indices=idx, material=0, mode=g.TRIANGLES)])],
        materials=[mat], accessors=acc, bufferViews=blob.views, images=images, textures=textures,
        samplers=[g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR, wrapS=g.CLAMP_TO_EDGE,
                            wrapT=g.CLAMP_TO_EDGE)] if textures else [],
        buffers=[g.Buffer(byteLength=len(blob.data), uri=bin_uri)])
    return doc, bytes(blob.data)


def write_gltf(em: ExportMesh, path: Path, binary: bool, prefix: str | None = None) -> None:
    """glb: one file, textures embedded. gltf: JSON + <stem>.bin + <prefix>_albedo.png / _normal.png
    (prefix: <stem>_gltf, so other formats of the same stem keep their own maps)."""
    if binary:
        doc, data = gltf_document(em, None, None)
        doc.set_binary_blob(data)
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"".join(doc.save_to_bytes()))
        return
    prefix = prefix or f"{path.stem}_gltf"
    uris = {"albedo": f"{prefix}_albedo.png", "normal": f"{prefix}_normal.png"}
    doc, data = gltf_document(em, f"{path.stem}.bin", uris if em.uvs is not None else None)
    with atomic_path(path.parent / f"{path.stem}.bin") as tmp:
        tmp.write_bytes(data)
    if em.uvs is not None:
        for key, img in (("albedo", em.albedo), ("normal", em.normal_map)):
            if img is not None:
                with atomic_path(path.parent / uris[key]) as tmp:
                    tmp.write_bytes(png_bytes(img))
    with atomic_path(path) as tmp:
        tmp.write_text(doc.to_json())


def write_usd(em: ExportMesh, path: Path, texture_dir: Path, texture_prefix: str) -> None:
    """USD (usd-core): /World/Mesh (points, normals, primvars st / displayColor), Y up, metres, and a
    UsdPreviewSurface reading <texture_prefix>_albedo.png (written into texture_dir)."""
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    mesh = UsdGeom.Mesh.Define(stage, "/World/Mesh")
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(em.vertices.astype(np.float32)))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(em.faces), 3, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(em.faces.astype(np.int32).ravel()))
    mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(em.normals.astype(np.float32)))
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    lo, hi = em.vertices.min(0), em.vertices.max(0)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    pv = UsdGeom.PrimvarsAPI(mesh)
    if em.colors is not None:
        pv.CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex).Set(
            Vt.Vec3fArray.FromNumpy((em.colors / 255.0).astype(np.float32)))
    material = UsdShade.Material.Define(stage, "/World/Material")
    shader = UsdShade.Shader.Define(stage, "/World/Material/Surface")
    shader.CreateIdAttr("UsdPreviewSurface")
    shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(ROUGHNESS))
    shader.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    if em.uvs is not None:
        pv.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex).Set(
            Vt.Vec2fArray.FromNumpy(em.uvs.astype(np.float32)))
        name = f"{texture_prefix}_albedo.png"
        (texture_dir / name).write_bytes(png_bytes(em.albedo))
        reader = UsdShade.Shader.Define(stage, "/World/Material/StReader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        tex = UsdShade.Shader.Define(stage, "/World/Material/Albedo")
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(f"./{name}")
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(tex.ConnectableAPI(), "rgb")
    else:
        shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(0.8, 0.8, 0.8))
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()


def write_usd_file(em: ExportMesh, path: Path, package: bool) -> None:
    """.usd/.usda/.usdc beside its texture, or a .usdz package (UsdUtils) holding both."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-usd-") as td:
        inner = Path(td) / (f"{path.stem}.usdc" if package else path.name)
        write_usd(em, inner, Path(td), f"{path.stem}_usd")
        if package:
            from pxr import UsdUtils

            out = Path(td) / path.name
            if not UsdUtils.CreateNewUsdzPackage(str(inner), str(out)):
                raise RuntimeError(f"usd-core could not package {path}")
            shutil.move(out, path)
            return
        for f in Path(td).iterdir():
            shutil.move(f, path.parent / f.name)


def write_fbx(em: ExportMesh, path: Path, ascii: bool = False) -> None:
    """FBX through the Assimp CLI from a glTF with external textures (copied beside the .fbx).
    Binary by default (Blender reads only binary FBX). Assimp < 5.3 writes binary FBX without the
    NULL records that close nested node lists, which no reader accepts (its own: "FBX-Tokenize ...
    block offset is out of range"); fbx_binary.add_nested_sentinels adds them (a no-op on a file
    that has them)."""
    exe = shutil.which("assimp")
    if exe is None:
        raise InputError(path, ASSIMP_HINT)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-fbx-") as td:
        src = Path(td) / f"{path.stem}.gltf"
        write_gltf(em, src, binary=False, prefix=f"{path.stem}_fbx")
        out = Path(td) / path.name
        r = subprocess.run([exe, "export", str(src), str(out), "-ffbxa" if ascii else "-ffbx"], capture_output=True, text=True)
        if r.returncode != 0 or not out.exists():
            raise RuntimeError(f"assimp failed to write {path}: {(r.stderr or r.stdout).strip()[-300:]}")
        if not ascii:
            from worldstereo.reconstruction.fbx_binary import add_nested_sentinels

            out.write_bytes(add_nested_sentinels(out.read_bytes()))
        for f in Path(td).glob(f"{path.stem}_fbx_*.png"):
            shutil.move(f, path.parent / f.name)
        shutil.move(out, path)


def export_mesh(scene: ReconstructedScene, path: str | Path, format: MeshFormat | None = None,
                include_textures: bool = True, texture_resolution: int | None = None, axes: Axes = "opengl",
                fbx_ascii: bool = False) -> Path:
    """Write the scene's mesh. format defaults to the file extension. Textures (when baked): obj
    (mtl + png), gltf (png files), glb / usdz (embedded), usd and fbx (png beside the file); ply
    carries vertex colours. texture_resolution resamples the maps (None: as baked). fbx_ascii
    writes ASCII FBX (readable by Assimp; Blender wants the default binary)."""
    path = Path(path)
    fmt = format or path.suffix.lstrip(".").lower()
    check_literal("format", fmt, MeshFormat)
    if len(scene.mesh.faces) == 0:
        raise InputError(path, "the scene's mesh is empty: nothing to export")
    if fmt == "fbx" and shutil.which("assimp") is None:
        raise InputError(path, ASSIMP_HINT)
    if texture_resolution is not None and not 16 <= int(texture_resolution) <= 16384:
        raise InputError(path, f"texture_resolution must be in 16..16384 (got {texture_resolution})")
    path.parent.mkdir(parents=True, exist_ok=True)
    em = prepare_mesh(scene, include_textures, texture_resolution, axes)
    if fmt == "obj":
        write_obj(em, path)
    elif fmt == "ply":
        write_ply_mesh(em, path)
    elif fmt in ("gltf", "glb"):
        write_gltf(em, path, binary=fmt == "glb")
    elif fmt in ("usd", "usdz"):
        write_usd_file(em, path, package=fmt == "usdz")
    else:
        write_fbx(em, path, fbx_ascii)
    return path


# --------------------------------------------------------------------------- point clouds


def write_pcd(path: Path, xyz: np.ndarray, rgb: np.ndarray | None, nrm: np.ndarray | None) -> None:
    """PCL .pcd v0.7, binary: x y z [rgb (packed 0x00RRGGBB read as float32)] [normal_x/y/z]."""
    names, cols = ["x", "y", "z"], [xyz.astype(np.float32)]
    if rgb is not None:
        packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2].astype(np.uint32)
        names.append("rgb")
        cols.append(packed.view(np.float32)[:, None])
    if nrm is not None:
        names += ["normal_x", "normal_y", "normal_z"]
        cols.append(nrm.astype(np.float32))
    data = np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float32)
    n, k = len(xyz), len(names)
    header = (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {' '.join(names)}\n"
              f"SIZE {' '.join(['4'] * k)}\nTYPE {' '.join(['F'] * k)}\nCOUNT {' '.join(['1'] * k)}\n"
              f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n")
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + data.tobytes())


def write_xyz(path: Path, xyz: np.ndarray, rgb: np.ndarray | None, nrm: np.ndarray | None) -> None:
    """Text, one point a line: x y z [r g b (0..255)] [nx ny nz]."""
    cols, fmt = [xyz], ["%.6f"] * 3
    if rgb is not None:
        cols.append(rgb.astype(np.float64))
        fmt += ["%d"] * 3
    if nrm is not None:
        cols.append(nrm)
        fmt += ["%.5f"] * 3
    buf = io.StringIO()
    np.savetxt(buf, np.concatenate(cols, axis=1), fmt=fmt)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def write_las(path: Path, xyz: np.ndarray, rgb: np.ndarray | None, nrm: np.ndarray | None) -> None:
    """LAS 1.4 (laspy): point format 2 with 16-bit RGB (value · 257) or 0 without; normals as extra
    dimensions normal_x/y/z (float32); coordinates at 0.1 mm (scale 1e-4, offset = minimum)."""
    import laspy

    header = laspy.LasHeader(point_format=2 if rgb is not None else 0, version="1.4")
    header.offsets = xyz.min(axis=0)
    header.scales = np.array([1e-4, 1e-4, 1e-4])
    if nrm is not None:
        header.add_extra_dims([laspy.ExtraBytesParams(name=f"normal_{a}", type=np.float32) for a in "xyz"])
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        las.red, las.green, las.blue = (rgb[:, k].astype(np.uint16) * 257 for k in range(3))
    if nrm is not None:
        for k, a in enumerate("xyz"):
            las[f"normal_{a}"] = nrm[:, k].astype(np.float32)
    with atomic_path(path) as tmp:
        las.write(str(tmp))


def export_point_cloud(scene: ReconstructedScene, path: str | Path, format: CloudFormat | None = None,
                       include_colors: bool = True, include_normals: bool = True, axes: Axes = "opengl") -> Path:
    """Write the scene's point cloud as ply / pcd / xyz / las (format defaults to the extension)."""
    from worldstereo.io.ply import write_ply

    path = Path(path)
    fmt = format or path.suffix.lstrip(".").lower()
    check_literal("format", fmt, CloudFormat)
    pc = scene.point_cloud
    if len(pc) == 0:
        raise InputError(path, "the scene's point cloud is empty: nothing to export")
    flip = OPENCV_TO_OPENGL if axes == "opengl" else np.ones(3)
    xyz = pc.points * flip
    rgb = pc.colors.astype(np.uint8) if include_colors else None
    nrm = pc.normals * flip if include_normals else None
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "ply":
        fields = {a: xyz[:, k].astype(np.float32) for k, a in enumerate("xyz")}
        if nrm is not None:
            fields.update({f"n{a}": nrm[:, k].astype(np.float32) for k, a in enumerate("xyz")})
        if rgb is not None:
            fields.update({c: rgb[:, k] for k, c in enumerate(("red", "green", "blue"))})
        write_ply(path, fields)
    else:
        {"pcd": write_pcd, "xyz": write_xyz, "las": write_las}[fmt](path, xyz, rgb, nrm)
    return path
