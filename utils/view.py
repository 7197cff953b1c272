"""Browser viewer for a scene's trained splats (viser, optional extra `worldstereo[viewer]`).

    python -m utils.view --scene scenes/my                  # gs_3dgs if trained, else gs_2dgs
    python -m utils.view --scene scenes/my --renderer 2dgs --port 8080
    python -m utils.view --scene scenes/my --host 0.0.0.0       # reachable from other machines (default: this one only)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import torch
import tyro

from worldstereo.errors import InputError, cli_entry
from worldstereo.render.gaussians import SH_C0, quat_to_rotmat
from worldstereo.scene import SceneDir
from worldstereo.splat.ply import read_splats_ply

if TYPE_CHECKING:
    import viser

INSTALL_HINT = "the viewer needs viser: pip install 'worldstereo[viewer]'  (or: pip install viser)"


@dataclass
class ViewConfig:
    """Serve gs_<renderer>/splats.ply in the browser."""

    scene: Path
    """Scene folder with gs_3dgs/ or gs_2dgs/."""
    renderer: Literal["auto", "3dgs", "2dgs"] = "auto"
    """Which splats to show; auto: 3dgs when trained, else 2dgs."""
    port: int = 8080
    """HTTP port of the viewer; the next free one when it is taken (0: any free port)."""
    host: str = "127.0.0.1"
    """Interface to listen on: 127.0.0.1 keeps the viewer to this machine; 0.0.0.0 opens it to the network."""


def find_splats(scene: SceneDir, renderer: str) -> Path:
    order = ["3dgs", "2dgs"] if renderer == "auto" else [renderer]
    for r in order:
        p = scene.gs_dir(r) / "splats.ply"
        if p.exists():
            return p
    raise InputError(scene.gs_dir(order[0]) / "splats.ply", "no trained splats: run train_gs.py on this scene first")


def splats_for_viewer(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """centers [N,3], covariances [N,3,3] = R S² Rᵀ, rgbs [N,3] (DC colour), opacities [N,1]."""
    R = quat_to_rotmat(params["quats"])
    S = torch.exp(params["log_scales"])
    cov = (R * S[:, None, :] ** 2) @ R.transpose(1, 2)
    rgb = (SH_C0 * params["sh0"][:, 0] + 0.5).clamp(0, 1)
    return {"centers": params["means"], "covariances": cov, "rgbs": rgb,
            "opacities": torch.sigmoid(params["opacity_logits"])[:, None]}


def import_viser() -> ModuleType:
    """The viser module, or a one-line install hint (viser is the optional extra `viewer`)."""
    try:
        import viser
    except ImportError:
        raise InputError(None, INSTALL_HINT)
    return viser


def start_viewer(path: Path, host: str = "127.0.0.1", port: int = 8080
                 ) -> tuple[viser.ViserServer, viser.GaussianSplatHandle]:
    """Load `path` and serve it in a background thread; the caller stops the returned server."""
    viser = import_viser()
    s = {k: v.numpy() for k, v in splats_for_viewer(read_splats_ply(path)).items()}
    server = viser.ViserServer(host=host, port=port, verbose=False)  # verbose: one line per browser connection
    splats = server.scene.add_gaussian_splats("/splats", centers=s["centers"], covariances=s["covariances"],
                                              rgbs=s["rgbs"], opacities=s["opacities"])
    return server, splats


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise InputError(None, f"--port must be from 0 to 65535, got {port}")


def main(cfg: ViewConfig) -> None:
    check_port(cfg.port)
    import_viser()  # the install hint comes before any complaint about the scene
    path = find_splats(SceneDir(cfg.scene), cfg.renderer)
    server, splats = start_viewer(path, cfg.host, cfg.port)
    url_host = "localhost" if cfg.host in ("0.0.0.0", "::") else cfg.host
    print(f"serving {path} ({len(splats.buffer)} Gaussians) at http://{url_host}:{server.get_port()}"
          " — Ctrl-C to stop")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        server.stop()  # prints "(viser) Server stopped"; a viewer has no outputs to keep, so exit 0


if __name__ == "__main__":
    cli_entry(main)(tyro.cli(ViewConfig))
