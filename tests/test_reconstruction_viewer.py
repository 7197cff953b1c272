"""The mesh viewer page: report contents, serving three.js locally, and a headless-Chromium screenshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from box_room import cameras, render  # noqa: E402

from worldstereo.cameras import Camera
from worldstereo.errors import InputError
from worldstereo.reconstruction import save_scene
from worldstereo.reconstruction.fusion import depth_cloud
from worldstereo.reconstruction.methods import tsdf_mesh
from worldstereo.reconstruction.texture import bake_textures
from worldstereo.reconstruction.types import Frames, ReconstructedScene, ReconstructionConfig
from worldstereo.reconstruction.viewer import THREE_HINT, find_three, serve, write_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _three() -> Path | None:
    try:
        return find_three()
    except InputError:
        return None


@pytest.fixture(scope="module")
def rec_folder(tmp_path_factory) -> Path:
    """<scene>/reconstruction of the analytic room from exact depth (textured, saved)."""
    K, poses = cameras(4, 96, 72, 70.0)
    imgs, depths = zip(*(render(K, c, 96, 72) for c in poses))
    frames = Frames(np.stack(imgs), [Camera(K, c, 96, 72) for c in poses])
    depth = np.stack(depths).astype(np.float32)
    cloud = depth_cloud(frames, depth)
    mesh, voxel = tsdf_mesh(frames, depth, cloud, ReconstructionConfig(resolution=128))
    mesh, tex, q = bake_textures(mesh, frames, cloud, 128, 2 * voxel)
    scene = ReconstructedScene(mesh, cloud, tex, frames.cameras,
                               {"method": "mvs", "quality_metrics": {"completeness": 0.5, "texture_quality": q}}, frames)
    root = tmp_path_factory.mktemp("scene")
    return save_scene(scene, root / "reconstruction")


def test_report_page(rec_folder):
    page = write_report(rec_folder, videos=["../videos/orbit.mp4"]).read_text()
    assert '"three":"/three/build/three.module.js"' in page and 'load("mesh.glb"' in page
    assert "<td>completeness</td><td>0.500</td>" in page and 'src="../videos/orbit.mp4"' in page
    view = json.loads(page.split("const view = ")[1].split(";")[0])
    assert view["eye"] == pytest.approx([-0.45, 0.0, 0.6], abs=1e-9)  # first camera, Y-up axes
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    with pytest.raises(InputError, match="no mesh to show"):
        write_report(rec_folder, mesh_name="missing.glb")


def test_find_three_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLDSTEREO_THREE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import worldstereo.reconstruction.viewer as v

    monkeypatch.setattr(v, "__file__", str(tmp_path / "a" / "b" / "viewer.py"))
    with pytest.raises(InputError, match=r"three.js not found: \(mkdir -p .tools && cd .tools && npm install three\)"):
        find_three()
    assert "npm install three" in THREE_HINT


def test_cli_without_mesh_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "utils.view_mesh", "--scene", str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith(f"error: {tmp_path / 'reconstruction' / 'mesh.glb'}: no mesh") or \
        r.stderr.strip().startswith("error: three.js not found")


@pytest.mark.skipif(_three() is None, reason=f"{THREE_HINT}")
def test_server_serves_page_glb_and_three(rec_folder):
    write_report(rec_folder)
    server = serve(rec_folder.parent, _three())
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        glb = urllib.request.urlopen(f"{base}/reconstruction/mesh.glb").read()
        assert glb[:4] == b"glTF"
        js = urllib.request.urlopen(f"{base}/three/build/three.module.js").read()
        assert b"WebGLRenderer" in js
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/three/../../etc/passwd")
    finally:
        server.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or _three() is None,
                    reason="needs chromium (apt-get install -y chromium) and three (npm install three in .tools)")
def test_headless_chromium_renders_the_mesh(rec_folder, tmp_path):
    import cv2

    write_report(rec_folder)
    server = serve(rec_folder.parent, _three())
    shot = tmp_path / "shot.png"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/reconstruction/report.html"
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                        "--enable-unsafe-swiftshader", "--window-size=640,480", "--virtual-time-budget=8000",
                        f"--screenshot={shot}", url], capture_output=True, timeout=180, check=True)
    finally:
        server.shutdown()
    img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB).astype(float)
    view = img[20:460, 20:320]  # the canvas (left of the 280 px side panel)
    background = np.abs(view - 0x20).max(axis=2) < 8  # scene.background 0x202020
    white = view.min(axis=2) > 245  # nothing drawn at all
    assert (~background & ~white).mean() > 0.6  # the textured walls cover most of the canvas
    assert view.std(axis=(0, 1)).mean() > 15  # and they are textured, not a flat fill
