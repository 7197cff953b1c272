"""export_mesh / export_point_cloud: every format read back by an independent reader (trimesh, pygltflib,
usd-core, laspy, plyfile, Assimp, numpy text) with the same counts, positions, colours and UVs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from worldstereo.errors import InputError
from worldstereo.reconstruction import PointCloud, ReconstructedScene, export_mesh, export_point_cloud
from worldstereo.reconstruction.fusion import vertex_normals
from worldstereo.reconstruction.texture import uv_atlas
from worldstereo.reconstruction.types import Mesh

ROOT = Path(__file__).resolve().parents[1]
FLIP = np.array([1.0, -1.0, -1.0])  # the files are Y-up: (x, −y, −z) of our OpenCV world
VALIDATOR = ROOT / ".tools" / "node_modules" / "gltf-validator"


@pytest.fixture(scope="module")
def scene() -> ReconstructedScene:
    import trimesh

    s = trimesh.creation.icosphere(2)
    V, F = np.asarray(s.vertices) * [1.0, 0.7, 1.3], np.asarray(s.faces)
    rng = np.random.default_rng(0)
    colors = rng.integers(0, 256, (len(V), 3)).astype(np.uint8)
    mesh = uv_atlas(Mesh(V, F, vertex_normals(V, F), colors), 64)
    yy, xx = np.mgrid[0:64, 0:64]
    albedo = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)
    textures = {"albedo": albedo, "normal": np.full((64, 64, 3), (128, 128, 255), np.uint8),
                "roughness": np.full((64, 64), 230, np.uint8)}
    pts = rng.normal(size=(500, 3))
    n = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    cloud = PointCloud(pts, rng.integers(0, 256, (500, 3)).astype(np.uint8), n)
    return ReconstructedScene(mesh, cloud, textures, [], {"method": "test"})


def _same_rows(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    """Equal up to row order (readers may reorder vertices): sorted lexicographically."""
    assert a.shape == b.shape
    np.testing.assert_allclose(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])], atol=atol)


# --------------------------------------------------------------------------- meshes


def test_obj_trimesh(scene, tmp_path):
    import trimesh

    export_mesh(scene, tmp_path / "scene.obj", format="obj", include_textures=True, texture_resolution=128)
    assert {p.name for p in tmp_path.iterdir()} == {"scene.obj", "scene.mtl", "scene_obj_albedo.png"}
    m = trimesh.load(tmp_path / "scene.obj", process=False, maintain_order=True)
    assert len(m.vertices) == len(scene.mesh.vertices) and len(m.faces) == len(scene.mesh.faces)
    np.testing.assert_allclose(m.vertices, scene.mesh.vertices * FLIP, atol=1e-6)
    np.testing.assert_array_equal(m.faces, scene.mesh.faces)
    np.testing.assert_allclose(m.visual.uv, scene.mesh.uvs, atol=1e-6)
    img = np.asarray(m.visual.material.image.convert("RGB"))
    assert img.shape == (128, 128, 3)


def test_ply_trimesh_colours(scene, tmp_path):
    import trimesh

    export_mesh(scene, tmp_path / "scene.ply")
    m = trimesh.load(tmp_path / "scene.ply", process=False)
    np.testing.assert_allclose(m.vertices, scene.mesh.vertices * FLIP, atol=1e-6)
    np.testing.assert_array_equal(m.faces, scene.mesh.faces)
    np.testing.assert_array_equal(m.visual.vertex_colors[:, :3], scene.mesh.colors)


def _gltf_arrays(path: Path):
    import pygltflib

    g = pygltflib.GLTF2().load(str(path))
    blob = g.binary_blob() if path.suffix == ".glb" else (path.parent / g.buffers[0].uri).read_bytes()
    prim = g.meshes[0].primitives[0]

    def read(i, dtype, width):
        a = g.accessors[i]
        v = g.bufferViews[a.bufferView]
        return np.frombuffer(blob[v.byteOffset:v.byteOffset + v.byteLength], dtype).reshape(a.count, width)

    out = {"pos": read(prim.attributes.POSITION, np.float32, 3), "idx": read(prim.indices, np.uint32, 1).reshape(-1, 3)}
    if prim.attributes.TEXCOORD_0 is not None:
        out["uv"] = read(prim.attributes.TEXCOORD_0, np.float32, 2)
    if prim.attributes.TANGENT is not None:
        out["tan"] = read(prim.attributes.TANGENT, np.float32, 4)
    if prim.attributes.COLOR_0 is not None:
        out["col"] = read(prim.attributes.COLOR_0, np.float32, 3)
    return g, blob, out


@pytest.mark.parametrize("fmt", ["glb", "gltf"])
def test_gltf_pygltflib(scene, tmp_path, fmt):
    import cv2

    export_mesh(scene, tmp_path / f"scene.{fmt}", include_textures=True)
    g, blob, a = _gltf_arrays(tmp_path / f"scene.{fmt}")
    np.testing.assert_allclose(a["pos"], scene.mesh.vertices * FLIP, atol=1e-6)
    np.testing.assert_array_equal(a["idx"], scene.mesh.faces)
    np.testing.assert_allclose(a["uv"][:, 0], scene.mesh.uvs[:, 0], atol=1e-6)
    np.testing.assert_allclose(a["uv"][:, 1], 1.0 - scene.mesh.uvs[:, 1], atol=1e-6)  # glTF v points down
    tan = a["tan"]
    np.testing.assert_allclose(np.linalg.norm(tan[:, :3], axis=1), 1.0, atol=1e-5)
    assert np.abs(np.einsum("ij,ij->i", tan[:, :3], scene.mesh.normals * FLIP)).max() < 1e-4
    assert set(np.unique(tan[:, 3])) <= {-1.0, 1.0}
    base = g.materials[0].pbrMetallicRoughness
    assert base.roughnessFactor == pytest.approx(0.9) and base.metallicFactor == 0.0
    img = g.images[g.textures[base.baseColorTexture.index].source]
    if fmt == "glb":
        v = g.bufferViews[img.bufferView]
        raw = blob[v.byteOffset:v.byteOffset + v.byteLength]
    else:
        raw = (tmp_path / img.uri).read_bytes()
    png = cv2.cvtColor(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(png, scene.textures["albedo"])


def test_formats_of_one_stem_keep_their_own_maps(scene, tmp_path):
    from PIL import Image

    export_mesh(scene, tmp_path / "s.obj", texture_resolution=128)
    export_mesh(scene, tmp_path / "s.gltf", texture_resolution=32)
    assert Image.open(tmp_path / "s_obj_albedo.png").size == (128, 128)
    assert Image.open(tmp_path / "s_gltf_albedo.png").size == (32, 32)


def test_glb_vertex_colours_without_textures(scene, tmp_path):
    export_mesh(scene, tmp_path / "plain.glb", include_textures=False)
    _, _, a = _gltf_arrays(tmp_path / "plain.glb")
    assert "uv" not in a
    np.testing.assert_allclose(a["col"] * 255, scene.mesh.colors, atol=1e-3)


@pytest.mark.skipif(not VALIDATOR.exists() or shutil.which("node") is None,
                    reason="Khronos validator not installed: (mkdir -p .tools && cd .tools && npm install gltf-validator)")
def test_glb_khronos_validator(scene, tmp_path):
    export_mesh(scene, tmp_path / "scene.glb", include_textures=True)
    script = ("const v=require(process.argv[1]);const fs=require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))"
              ".then(r=>console.log(JSON.stringify(r.issues)));")
    r = subprocess.run(["node", "-e", script, str(VALIDATOR), str(tmp_path / "scene.glb")],
                       capture_output=True, text=True, check=True)
    issues = json.loads(r.stdout)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]


@pytest.mark.parametrize("fmt", ["usd", "usdz"])
def test_usd_pxr(scene, tmp_path, fmt):
    from pxr import Usd, UsdGeom, UsdShade

    export_mesh(scene, tmp_path / f"scene.{fmt}", include_textures=True)
    stage = Usd.Stage.Open(str(tmp_path / f"scene.{fmt}"))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/World/Mesh"))
    pts = np.asarray(mesh.GetPointsAttr().Get())
    np.testing.assert_allclose(pts, scene.mesh.vertices * FLIP, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3), scene.mesh.faces)
    st = np.asarray(UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get())
    np.testing.assert_allclose(st, scene.mesh.uvs, atol=1e-6)
    mat, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    assert mat.GetPath() == "/World/Material"
    tex = UsdShade.Shader(stage.GetPrimAtPath("/World/Material/Albedo")).GetInput("file").Get()
    assert tex.path.endswith("scene_usd_albedo.png")
    # the validators `usdchecker` runs (usd-core's UsdValidation registry): no errors
    from pxr import UsdValidation

    validators = UsdValidation.ValidationRegistry().GetOrLoadAllValidators()
    errors = UsdValidation.ValidationContext(validators).Validate(stage)
    assert [(e.GetName(), e.GetMessage()) for e in errors] == []
    if fmt == "usd":
        assert (tmp_path / "scene_usd_albedo.png").exists()
    else:
        import zipfile

        assert {"scene.usdc", "scene_usd_albedo.png"} <= set(zipfile.ZipFile(tmp_path / "scene.usdz").namelist())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.usdz"]


def _assimp_counts(path) -> dict[str, int]:
    r = subprocess.run(["assimp", "info", str(path), "-jiv"], capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-500:]
    return {k: int(v) for k, v in (ln.split(":")[:2] for ln in r.stdout.splitlines()
                                   if ln.startswith(("Vertices:", "Faces:")))}


@pytest.mark.skipif(shutil.which("assimp") is None, reason="assimp-utils not installed (apt-get install -y assimp-utils)")
@pytest.mark.parametrize("ascii", [True, False], ids=["ascii", "binary"])
def test_fbx_assimp(scene, tmp_path, ascii):
    """Both FBX variants read back by Assimp with the mesh's vertex and face counts (the binary one
    only after fbx_binary adds the NULL records Assimp 5.2 leaves out)."""
    export_mesh(scene, tmp_path / "scene.fbx", include_textures=True, fbx_ascii=ascii)
    assert _assimp_counts(tmp_path / "scene.fbx") == {"Vertices": len(scene.mesh.vertices), "Faces": len(scene.mesh.faces)}
    assert (tmp_path / "scene.fbx").read_bytes()[:20] == (b"; FBX 7.5.0 project file" if ascii else b"Kaydara FBX Binary  ")[:20]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.fbx", "scene_fbx_albedo.png", "scene_fbx_normal.png"]


def test_fbx_nested_lists_get_their_null_records():
    """A hand-built FBX 7500 tree whose nested list lacks its NULL record (as Assimp 5.2 writes it):
    the repair adds the 25 zero bytes, fixes the end offsets, and leaves a repaired file unchanged."""
    import struct

    from worldstereo.reconstruction.fbx_binary import HEADER, add_nested_sentinels

    def node(name: bytes, start: int, children: bytes = b"", props: bytes = b"", n_props: int = 0, null: bool = False):
        body = bytes([len(name)]) + name + props
        end = start + 24 + len(body) + len(children) + (25 if null else 0)
        return struct.pack("<QQQ", end, n_props, len(props)) + body + children + (b"\0" * 25 if null else b"")

    leaf_props = b"I" + struct.pack("<i", 7)
    start = 27
    leaf = node(b"Leaf", start + 24 + 1 + 6, props=leaf_props, n_props=1)
    broken = HEADER + struct.pack("<I", 7500) + node(b"Parent", start, leaf) + b"\0" * 25 + b"FOOTER"
    fixed = add_nested_sentinels(broken)
    leaf_ok = node(b"Leaf", start + 24 + 1 + 6, props=leaf_props, n_props=1)
    expected = HEADER + struct.pack("<I", 7500) + node(b"Parent", start, leaf_ok, null=True) + b"\0" * 25 + b"FOOTER"
    assert fixed == expected and len(fixed) == len(broken) + 25
    assert add_nested_sentinels(fixed) == fixed


def test_fbx_without_assimp_is_one_line_error(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match=r"apt-get install -y assimp-utils$"):
        export_mesh(scene, tmp_path / "scene.fbx")
    assert list(tmp_path.iterdir()) == []


def test_bad_format_and_empty_mesh(scene, tmp_path):
    with pytest.raises(InputError, match=r"^format must be one of 'obj', 'ply', 'gltf', 'glb', 'usd', 'usdz', 'fbx' \(got 'stl'\)$"):
        export_mesh(scene, tmp_path / "x.stl")
    empty = ReconstructedScene(Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3))), scene.point_cloud, {}, [])
    with pytest.raises(InputError, match="mesh is empty"):
        export_mesh(empty, tmp_path / "x.glb")


# --------------------------------------------------------------------------- point clouds


def test_cloud_ply_plyfile(scene, tmp_path):
    from plyfile import PlyData

    export_point_cloud(scene, tmp_path / "c.ply", include_colors=True, include_normals=True)
    v = PlyData.read(str(tmp_path / "c.ply"))["vertex"].data
    pc = scene.point_cloud
    np.testing.assert_allclose(np.stack([v["x"], v["y"], v["z"]], 1), pc.points * FLIP, atol=1e-6)
    np.testing.assert_allclose(np.stack([v["nx"], v["ny"], v["nz"]], 1), pc.normals * FLIP, atol=1e-6)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), pc.colors)


def test_cloud_pcd_header_and_data(scene, tmp_path):
    """PCL binary layout read by hand from the spec (header lines, then packed float32 rows)."""
    export_point_cloud(scene, tmp_path / "c.pcd")
    raw = (tmp_path / "c.pcd").read_bytes()
    end = raw.index(b"DATA binary\n") + len(b"DATA binary\n")
    header = dict(ln.split(" ", 1) for ln in raw[:end].decode().splitlines() if not ln.startswith("#"))
    assert header["FIELDS"] == "x y z rgb normal_x normal_y normal_z" and header["POINTS"] == "500"
    rows = np.frombuffer(raw[end:], np.float32).reshape(500, 7)
    pc = scene.point_cloud
    np.testing.assert_allclose(rows[:, :3], pc.points * FLIP, atol=1e-6)
    rgb = rows[:, 3].copy().view(np.uint32)
    np.testing.assert_array_equal(np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], 1), pc.colors)


def test_cloud_xyz_loadtxt(scene, tmp_path):
    export_point_cloud(scene, tmp_path / "c.xyz", include_colors=True, include_normals=False)
    a = np.loadtxt(tmp_path / "c.xyz")
    assert a.shape == (500, 6)
    np.testing.assert_allclose(a[:, :3], scene.point_cloud.points * FLIP, atol=1e-5)
    np.testing.assert_array_equal(a[:, 3:].astype(np.uint8), scene.point_cloud.colors)


def test_cloud_las_laspy(scene, tmp_path):
    import laspy

    export_point_cloud(scene, tmp_path / "c.las")
    las = laspy.read(str(tmp_path / "c.las"))
    pc = scene.point_cloud
    assert len(las.points) == 500
    np.testing.assert_allclose(np.stack([las.x, las.y, las.z], 1), pc.points * FLIP, atol=1e-4)
    np.testing.assert_array_equal(np.stack([las.red, las.green, las.blue], 1), pc.colors.astype(np.uint16) * 257)
    np.testing.assert_allclose(np.stack([las["normal_x"], las["normal_y"], las["normal_z"]], 1), pc.normals * FLIP, atol=1e-6)
    export_point_cloud(scene, tmp_path / "plain.las", include_colors=False, include_normals=False)
    assert laspy.read(str(tmp_path / "plain.las")).header.point_format.id == 0
