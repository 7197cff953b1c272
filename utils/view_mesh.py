"""Show a scene's reconstructed mesh in the browser (three.js, served locally) next to its videos and metrics.

    python -m utils.export mesh --scene scenes/my --format glb     # once: builds scenes/my/reconstruction/
    python -m utils.view_mesh --scene scenes/my                      # → http://127.0.0.1:8090/reconstruction/report.html

three.js comes from a local npm copy (no network at view time): mkdir -p .tools && cd .tools && npm install three
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from worldstereo.errors import InputError, cli_entry


@dataclass
class ViewMeshConfig:
    """Serve <scene>/reconstruction/report.html (mesh.glb, metrics, the scene's videos)."""

    scene: Path
    """Scene folder with reconstruction/mesh.glb."""
    port: int = 8090
    """HTTP port (0: any free port)."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0: all)."""


def prepare(scene: Path) -> Path:
    """Write the report page; returns its path relative to the scene folder."""
    from worldstereo.reconstruction.viewer import write_report

    if not scene.is_dir():
        raise InputError(scene, "scene folder not found")
    rec = scene / "reconstruction"
    if not (rec / "mesh.glb").exists():
        raise InputError(rec / "mesh.glb", f"no mesh: run python -m utils.export mesh --scene {scene} first")
    videos = [f"../videos/{p.name}" for p in sorted((scene / "videos").glob("*.mp4"))]
    return write_report(rec, "mesh.glb", videos).relative_to(scene)


@cli_entry
def main(cfg: ViewMeshConfig) -> None:
    from worldstereo.reconstruction.viewer import find_three, serve

    three = find_three()
    page = prepare(cfg.scene)
    server = serve(cfg.scene, three, cfg.host, cfg.port)
    host, port = server.server_address[:2]
    print(f"[view] http://{host}:{port}/{page.as_posix()}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main(tyro.cli(ViewMeshConfig))
