"""Export a scene's cameras for other tools: NeRF/nerfstudio transforms.json, WorldStereo camera.json.

    python -m utils.export transforms --scene scenes/my            # → scenes/my/exports/transforms.json
    python -m utils.export camera-json --scene scenes/my --trajectory up
    python -m utils.export worldstereo-pano --scene scenes/hall --out task/   # the release's panorama layout
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import tyro
from typing_extensions import Annotated

from worldstereo.cameras import Camera, Trajectory, load_trajectory, to_nerf_transforms, to_worldstereo_camera_json
from worldstereo.errors import InputError, cli_entry
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
        m = scene.load()
        W, H = m.working_size
        cams = [Camera(np.asarray(m.K), np.eye(4), W, H)]
        paths = ["../input/image.png"]
        for name in m.trajectory_order:
            if f"generate/{name}" not in m.stages:
                continue  # not generated yet: its planned cameras have no frames
            scene.require_current(f"generate/{name}", scene.frames(name))
            traj = load_trajectory(scene.trajectory(name))
            for j, c in enumerate(traj.cameras):
                cams.append(c)
                paths.append(f"../frames/{name}/{j:06d}.png")
        out = self.out or scene.exports_dir / "transforms.json"
        with scene.lock():
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
        order = scene.load().trajectory_order
        if self.trajectory not in order:
            raise InputError(scene.manifest_path, f"unknown trajectory '{self.trajectory}' (planned: {', '.join(order) or 'none'})")
        scene.require_current("plan", scene.trajectory(self.trajectory))
        traj = load_trajectory(scene.trajectory(self.trajectory))
        out = self.out or scene.exports_dir / f"{self.trajectory}_camera.json"
        with scene.lock():
            atomic_write_text(out, json.dumps(to_worldstereo_camera_json(traj)))
        print(f"[export] {len(traj)} cameras → {out}")
        return out


@dataclass
class WorldStereoPano:
    """A panoramic scene in the WorldStereo release's examples/panorama/<id>/ layout: pano_bank/
    (cameras.json + images/0000.png …) and view<k>/traj_<kind>/camera.json per planned trajectory."""

    scene: Path
    """Scene folder of a panorama (run_pipeline.py --panorama / --pano-bank)."""
    out: Path = Path("")
    """Output folder (written into; existing files of the same names are replaced)."""

    def main(self) -> Path:
        from worldstereo.memory.bank import MemoryBank
        from worldstereo.panorama.bank import to_release_camera_json, write_bank_cameras
        from worldstereo.io.images import write_image

        scene = SceneDir(self.scene)
        m = scene.load()
        if m.input_kind != "panorama":
            raise InputError(scene.manifest_path, f"input_kind is {m.input_kind!r}: worldstereo-pano exports panoramic scenes only")
        if not str(self.out):
            raise InputError(None, "--out is required (the folder to write the release's layout into)")
        scene.require_current("plan", scene.manifest_path)
        bank = MemoryBank(scene.memory_bank)
        entries = sorted((e for e in bank.entries if e.source == "panorama"), key=lambda e: e.frame)
        out = Path(self.out)
        for e in entries:
            write_image(out / "pano_bank" / "images" / f"{e.frame:04d}.png", bank.image(e))
        write_bank_cameras(out / "pano_bank" / "cameras.json", [e.camera for e in entries])
        for name in m.trajectory_order:
            view, _, kind = name.partition("_")
            folder = out / view / f"traj_{kind}" if view.startswith("view") and kind else out / "custom" / name
            traj = load_trajectory(scene.trajectory(name))
            atomic_write_text(folder / "camera.json", json.dumps(to_release_camera_json(traj)))
        print(f"[export] {len(entries)} bank views + {len(m.trajectory_order)} trajectories → {out}")
        return out


SUBCOMMANDS = Union[Annotated[Transforms, tyro.conf.subcommand("transforms")],
                    Annotated[CameraJson, tyro.conf.subcommand("camera-json")],
                    Annotated[WorldStereoPano, tyro.conf.subcommand("worldstereo-pano")]]


@cli_entry
def main(cmd: SUBCOMMANDS) -> None:  # type: ignore[valid-type]
    cmd.main()


if __name__ == "__main__":
    main(tyro.cli(SUBCOMMANDS))  # type: ignore[arg-type]
