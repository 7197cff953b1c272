"""A local browser page for a reconstruction: the glb in three.js (served from a local npm copy of
`three`, no network at view time) next to the scene's videos and the quality metrics."""

from __future__ import annotations

import functools
import html
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from worldstereo.errors import InputError

THREE_HINT = "three.js not found: (mkdir -p .tools && cd .tools && npm install three), or set WORLDSTEREO_THREE_DIR"
REPORT = "report.html"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{margin:0;font:14px sans-serif;display:flex;height:100vh}}#view{{flex:1;min-width:0}}
#view{{height:100vh}}aside{{flex:0 0 280px;overflow:auto;padding:8px;background:#f4f4f4}}video{{width:100%}}td{{padding:2px 6px}}</style>
<script type="importmap">{{"imports":{{"three":"/three/build/three.module.js","three/addons/":"/three/examples/jsm/"}}}}</script>
</head><body><div id="view"></div><aside><h3>{title}</h3><table>{metrics}</table>{videos}</aside>
<script type="module">
import * as THREE from "three";
import {{ GLTFLoader }} from "three/addons/loaders/GLTFLoader.js";
import {{ OrbitControls }} from "three/addons/controls/OrbitControls.js";
const box = document.getElementById("view");
const renderer = new THREE.WebGLRenderer({{antialias: true, preserveDrawingBuffer: true}});
renderer.setSize(box.clientWidth, box.clientHeight);
addEventListener("resize", () => {{ renderer.setSize(box.clientWidth, box.clientHeight);
  camera.aspect = box.clientWidth / box.clientHeight; camera.updateProjectionMatrix(); }});
box.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x202020);
scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 2.5));
const view = {view};  // the first reconstruction camera, in the file's Y-up axes
const camera = new THREE.PerspectiveCamera(view.fov_y, box.clientWidth / box.clientHeight, 0.01, 1000);
const controls = new OrbitControls(camera, renderer.domElement);
new GLTFLoader().load("{mesh}", (gltf) => {{
  gltf.scene.traverse((o) => {{ if (o.isMesh) o.material.side = THREE.DoubleSide; }});
  scene.add(gltf.scene);
  const bb = new THREE.Box3().setFromObject(gltf.scene), c = bb.getCenter(new THREE.Vector3());
  if (view.eye) {{  // start where the first frame was filmed from: the mesh is seen from inside
    camera.position.fromArray(view.eye);
    const fwd = new THREE.Vector3().fromArray(view.forward);
    controls.target.copy(camera.position).addScaledVector(fwd, Math.max(camera.position.distanceTo(c), 0.1));
  }} else {{
    camera.position.copy(c).add(new THREE.Vector3(0, 0, bb.getSize(new THREE.Vector3()).length()));
    controls.target.copy(c);
  }}
  controls.update();
  document.title = "{title} (loaded)";
}}, undefined, (err) => {{ document.title = "{title} (error: " + err + ")"; console.error(err); }});
(function loop() {{ requestAnimationFrame(loop); renderer.render(scene, camera); }})();
</script></body></html>
"""


def find_three(extra: Path | None = None) -> Path:
    """The `three` npm package folder: $WORLDSTEREO_THREE_DIR, then .tools/node_modules/three and
    node_modules/three in the current folder and in the repository."""
    repo = Path(__file__).resolve().parents[2]
    cands = [Path(os.environ["WORLDSTEREO_THREE_DIR"])] if os.environ.get("WORLDSTEREO_THREE_DIR") else []
    cands += [d / sub for d in (Path.cwd(), repo) for sub in (".tools/node_modules/three", "node_modules/three")]
    cands = ([extra] if extra else []) + cands
    for c in cands:
        if (c / "build" / "three.module.js").exists():
            return c
    raise InputError(None, THREE_HINT)


def first_view(folder: Path) -> dict:
    """Eye, forward and vertical field of view of the first camera in scene.npz, in the exported
    files' Y-up axes ((x, −y, −z) of the OpenCV world); a default when there is none."""
    import numpy as np

    try:
        with np.load(folder / "scene.npz", allow_pickle=False) as z:
            c2w, K, size = z["cam_c2w"][0], z["cam_K"][0], z["cam_size"][0]
    except (OSError, KeyError, IndexError, ValueError):
        return {"fov_y": 60.0}
    flip = np.array([1.0, -1.0, -1.0])
    return {"eye": (c2w[:3, 3] * flip).tolist(), "forward": (c2w[:3, 2] * flip).tolist(),
            "fov_y": float(np.degrees(2 * np.arctan(0.5 * size[1] / K[1, 1])))}


def write_report(folder: str | Path, mesh_name: str = "mesh.glb", videos: list[str] | None = None) -> Path:
    """<folder>/report.html: the mesh (relative to folder), metadata.json's quality metrics, videos
    (paths relative to folder)."""
    folder = Path(folder)
    if not (folder / mesh_name).exists():
        raise InputError(folder / mesh_name, "no mesh to show: run reconstruct_scene (or utils.export mesh) first")
    meta = json.loads((folder / "metadata.json").read_text()) if (folder / "metadata.json").exists() else {}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>"
                   for k, v in meta.get("quality_metrics", {}).items())
    vids = "".join(f'<p>{html.escape(v)}</p><video src="{html.escape(v)}" controls muted loop></video>'
                   for v in videos or [])
    page = PAGE.format(title=html.escape(str(meta.get("method", "reconstruction"))), metrics=rows, videos=vids,
                       mesh=mesh_name, view=json.dumps(first_view(folder)))
    out = folder / REPORT
    out.write_text(page)
    return out


class _Handler(SimpleHTTPRequestHandler):
    """Serves the reconstruction's parent scene folder at / and the three package at /three/."""

    def __init__(self, *args, root: Path, three: Path, **kwargs):
        self._three = three
        super().__init__(*args, directory=str(root), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/three/"):
            rel = path[len("/three/"):].split("?", 1)[0]
            target = (self._three / rel).resolve()
            if self._three.resolve() in target.parents:
                return str(target)
        return super().translate_path(path)

    def log_message(self, *args) -> None:  # quiet
        pass


def serve(root: str | Path, three_dir: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start serving `root` (and three at /three/) in a daemon thread; returns the server
    (server.server_address gives the port; server.shutdown() stops it)."""
    handler = functools.partial(_Handler, root=Path(root), three=Path(three_dir))
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
