"""Export a scene's cameras for other tools: NeRF/nerfstudio transforms.json, WorldStereo camera.json.

    python -m utils.export transforms --scene scenes/my            # → scenes/my/exports/transforms.json
    python -m utils.export camera-json --scene scenes/my --trajectory up
    python -m utils.export worldstereo-task --scene scenes/my --out task/   # the release's task layout
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
class WorldStereoTask:
    """The official WorldStereo reconstruction task layout: image.png, prompt.json and
    renders/traj_<name>/{camera.json, render.mp4, render_mask.mp4} (mask white = hole), every planned
    trajectory rendered from the input view's cache, for the release's run_multi_traj.py."""

    scene: Path
    """Scene folder (prepare and plan must be current)."""
    out: Path = Path("task")
    """Output folder: new, empty, or an earlier task export (replaced)."""
    prompt: Optional[str] = None
    """Text for prompt.json (default: the scene's --prompt / --prompt-file, else empty)."""
    fps: int = 16
    """Frame rate of the render videos (the release's output rate)."""

    def main(self) -> Path:
        from worldstereo.pipeline.driver import saved_config
        from worldstereo.pipeline.interop import write_worldstereo_task

        scene = SceneDir(self.scene)
        scene.load()
        scene.require_current("prepare", scene.cache_step(0))
        scene.require_current("plan", scene.manifest_path)
        if self.out.exists() and (not self.out.is_dir() or (any(self.out.iterdir()) and not (self.out / "renders").is_dir())):
            raise InputError(self.out, "exists and is not an empty folder or an earlier task export: choose another --out")
        cfg = saved_config(scene).generator
        prompt = self.prompt
        if prompt is None:
            from worldstereo.generate.worldstereo.sampling import prompt_from_json

            prompt = cfg.prompt or (prompt_from_json(cfg.prompt_file) if cfg.prompt_file is not None else "")
        names = write_worldstereo_task(scene, self.out, prompt, self.fps, cfg.geometric.splat_scale)
        print(f"[export] task with {len(names)} trajectories ({', '.join(names)}) → {self.out}")
        return self.out


@cli_entry
def main(cmd: Union[Annotated[Transforms, tyro.conf.subcommand("transforms")],
                    Annotated[CameraJson, tyro.conf.subcommand("camera-json")],
                    Annotated[WorldStereoTask, tyro.conf.subcommand("worldstereo-task")]]) -> None:
    cmd.main()


if __name__ == "__main__":
    main(tyro.cli(Union[Annotated[Transforms, tyro.conf.subcommand("transforms")],  # type: ignore[arg-type]
                        Annotated[CameraJson, tyro.conf.subcommand("camera-json")],
                        Annotated[WorldStereoTask, tyro.conf.subcommand("worldstereo-task")]]))
