"""Export a scene for other tools: cameras (NeRF/nerfstudio transforms.json, WorldStereo camera.json),
a textured mesh (obj / ply / gltf / glb / usd / usdz / fbx) or a point cloud (ply / pcd / xyz / las).

    python -m utils.export transforms --scene scenes/my            # → scenes/my/exports/transforms.json
    python -m utils.export camera-json --scene scenes/my --trajectory up
    python -m utils.export mesh --scene scenes/my --format glb     # → scenes/my/exports/mesh.glb
    python -m utils.export points --scene scenes/my --format las   # → scenes/my/exports/points.las
    python -m utils.export worldstereo-task --scene scenes/my --out task/   # the release's task layout
    python -m utils.export worldstereo-pano --scene scenes/hall --out task/   # the release's panorama layout

mesh / points reuse <scene>/reconstruction/ when it exists, else run reconstruct_scene on the
scene's exports/npz/results.npz first (and keep its result there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

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


def _reconstruction(scene_root: Path, method: str, resolution: int, texture_resolution: int, redo: bool):
    """The scene's saved reconstruction, or a new one (saved to <scene>/reconstruction)."""
    from worldstereo.reconstruction import ReconstructionConfig, load_scene, reconstruct_scene

    if not scene_root.is_dir():
        raise InputError(scene_root, "scene folder not found")
    scene = SceneDir(scene_root)
    if scene.exists() and "export" in scene.load().stages:
        scene.require_current("export", scene.results_npz)  # a stale results.npz is refused
    saved = scene_root / "reconstruction"
    fresh = (saved / "scene.npz").exists() and (saved / "scene.npz").stat().st_mtime >= scene.results_npz.stat().st_mtime
    if fresh and not redo:
        return load_scene(saved)
    cfg = ReconstructionConfig(method=method, resolution=resolution, texture_resolution=texture_resolution,  # type: ignore[arg-type]
                               depth_estimation=False)
    return reconstruct_scene(scene_root, config=cfg, output_path=saved)


@dataclass
class MeshExport:
    """The scene's textured mesh (reconstructed from results.npz on first use)."""

    scene: Path
    """Scene folder (ours, or any folder with exports/npz/results.npz)."""
    format: Literal["obj", "ply", "gltf", "glb", "usd", "usdz", "fbx"] = "glb"
    """File format."""
    out: Optional[Path] = None
    """Output file (default: <scene>/exports/mesh.<format>)."""
    method: Literal["mvs", "neural", "hybrid"] = "mvs"
    """Reconstruction method when there is no saved reconstruction (see docs/reconstruction_api.md)."""
    resolution: int = 512
    """Working size and grid resolution of a new reconstruction."""
    texture_resolution: int = 1024
    """Side of the texture maps."""
    textures: bool = True
    """Write textures (else vertex colours)."""
    redo: bool = False
    """Reconstruct again even if <scene>/reconstruction exists."""

    def main(self) -> Path:
        from worldstereo.reconstruction import export_mesh

        rec = _reconstruction(self.scene, self.method, self.resolution, self.texture_resolution, self.redo)
        out = self.out or self.scene / "exports" / f"mesh.{self.format}"
        export_mesh(rec, out, format=self.format, include_textures=self.textures,
                    texture_resolution=self.texture_resolution)
        print(f"[export] mesh: {len(rec.mesh.vertices)} vertices, {len(rec.mesh.faces)} faces → {out}")
        return out


@dataclass
class PointsExport:
    """The scene's fused point cloud (reconstructed from results.npz on first use)."""

    scene: Path
    """Scene folder (ours, or any folder with exports/npz/results.npz)."""
    format: Literal["ply", "pcd", "xyz", "las"] = "ply"
    """File format."""
    out: Optional[Path] = None
    """Output file (default: <scene>/exports/points.<format>)."""
    method: Literal["mvs", "neural", "hybrid"] = "mvs"
    """Reconstruction method when there is no saved reconstruction."""
    resolution: int = 512
    """Working size and grid resolution of a new reconstruction."""
    redo: bool = False
    """Reconstruct again even if <scene>/reconstruction exists."""

    def main(self) -> Path:
        from worldstereo.reconstruction import export_point_cloud

        rec = _reconstruction(self.scene, self.method, self.resolution, 1024, self.redo)
        out = self.out or self.scene / "exports" / f"points.{self.format}"
        export_point_cloud(rec, out, format=self.format)
        print(f"[export] points: {len(rec.point_cloud)} → {out}")
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


Command = Union[Annotated[Transforms, tyro.conf.subcommand("transforms")],
                Annotated[CameraJson, tyro.conf.subcommand("camera-json")],
                Annotated[MeshExport, tyro.conf.subcommand("mesh")],
                Annotated[PointsExport, tyro.conf.subcommand("points")],
                Annotated[WorldStereoTask, tyro.conf.subcommand("worldstereo-task")],
                Annotated[WorldStereoPano, tyro.conf.subcommand("worldstereo-pano")]]


@cli_entry
def main(cmd: Command) -> None:  # type: ignore[valid-type]
    cmd.main()


if __name__ == "__main__":
    main(tyro.cli(Command))  # type: ignore[arg-type]
