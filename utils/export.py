"""Export a scene's cameras for other tools: NeRF/nerfstudio transforms.json, WorldStereo camera.json.

    python -m utils.export transforms --scene scenes/my            # → scenes/my/exports/transforms.json
    python -m utils.export camera-json --scene scenes/my --trajectory up
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import tyro
from typing_extensions import Annotated

from worldstereo.cameras import Camera, Trajectory, load_trajectory, to_nerf_transforms, to_worldstereo_camera_json
from worldstereo.errors import cli_entry
from worldstereo.io.atomic import atomic_write_text
from worldstereo.scene import SceneDir


@dataclass
class Transforms:
    """All generated frames (and the input view) as a nerfstudio transforms.json (OpenGL c2w)."""

    scene: Path
    """Scene folder."""
    out: Optional[Path] = None
    """Output file (default: <scene>/exports/transforms.json)."""

    def main(self) -> Path:
        scene = SceneDir(self.scene)
        meta = scene.load()
        import numpy as np

        W, H = meta["working_size"]
        cams = [Camera(np.asarray(meta["K"]), np.eye(4), W, H)]
        paths = ["../input/image.png"]
        for name in meta.get("trajectory_order", []):
            traj = load_trajectory(scene.trajectory(name))
            for j, c in enumerate(traj.cameras):
                if (scene.frames(name) / f"{j:06d}.png").exists():
                    cams.append(c)
                    paths.append(f"../frames/{name}/{j:06d}.png")
        out = self.out or scene.root / "exports" / "transforms.json"
        atomic_write_text(out, json.dumps(to_nerf_transforms(Trajectory(cams, "all"), paths), indent=1))
        print(f"[export] {len(cams)} cameras → {out}")
        return out


@dataclass
class CameraJson:
    """One trajectory in WorldStereo's camera.json layout (w2c extrinsics + intrinsics)."""

    scene: Path
    """Scene folder."""
    trajectory: str = "orbit"
    """Planned trajectory name."""
    out: Optional[Path] = None
    """Output file (default: <scene>/exports/<trajectory>_camera.json)."""

    def main(self) -> Path:
        scene = SceneDir(self.scene)
        scene.load()
        traj = load_trajectory(scene.trajectory(self.trajectory))
        out = self.out or scene.root / "exports" / f"{self.trajectory}_camera.json"
        atomic_write_text(out, json.dumps(to_worldstereo_camera_json(traj)))
        print(f"[export] {len(traj)} cameras → {out}")
        return out


@cli_entry
def main(cmd: Union[Annotated[Transforms, tyro.conf.subcommand("transforms")],
                    Annotated[CameraJson, tyro.conf.subcommand("camera-json")]]) -> None:
    cmd.main()


if __name__ == "__main__":
    main(tyro.cli(Union[Annotated[Transforms, tyro.conf.subcommand("transforms")],  # type: ignore[arg-type]
                        Annotated[CameraJson, tyro.conf.subcommand("camera-json")]]))
