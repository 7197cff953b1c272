"""Interop with the official WorldStereo scripts: their reconstruction task layout out, their videos in.

    write_worldstereo_task(scene, Path("task"), prompt="a sunlit kitchen")   # image.png, prompt.json, renders/
    frames, note = imported_frames(Path("up_result.mp4"), n=21, width=512, height=344)

The task layout is what the release's multi-trajectory "reconstruction" mode reads:
image.png, prompt.json and renders/traj_<name>/{camera.json, render.mp4, render_mask.mp4}, the mask
white where the render has a hole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from worldstereo.cameras import Trajectory, load_trajectory, to_worldstereo_camera_json
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_dir
from worldstereo.io.images import read_image, write_image
from worldstereo.io.video import read_video, write_video
from worldstereo.memory.cache import PointCache
from worldstereo.scene import SceneDir

MAX_ASPECT_CHANGE = 0.02
"""An imported video whose aspect ratio differs from the frames' by more than this fraction is refused."""


def imported_frames(video: Path, n: int, width: int, height: int) -> tuple[np.ndarray, str]:
    """Frames [n, height, width, 3] uint8 of an outside video for a trajectory of n cameras, and a note
    saying what was changed. More frames than cameras: resampled at round(linspace(0, N−1, n)) (the
    release's 81-frame output → its 21 keyframes). Fewer frames, or another aspect ratio: InputError."""
    frames = read_video(video)
    N, (h, w) = len(frames), frames[0].shape[:2]
    if N < n:
        raise InputError(video, f"video has {N} frames, the trajectory has {n} cameras: need at least {n}")
    if abs((w / h) / (width / height) - 1) > MAX_ASPECT_CHANGE:
        raise InputError(video, f"video is {w}x{h}, the trajectory's frames are {width}x{height}: "
                                "the aspect ratio differs")
    notes = []
    if N != n:
        pick = np.round(np.linspace(0, N - 1, n)).astype(int)
        frames = [frames[i] for i in pick]
        notes.append(f"resampled {N} → {n} frames (frames {pick[0]}, {pick[1]}, … {pick[-1]})")
    if (w, h) != (width, height):
        frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
        notes.append(f"resized {w}x{h} → {width}x{height}")
    return np.stack(frames).astype(np.uint8), "; ".join(notes)


@dataclass
class TaskTrajectory:
    """One trajectory of the task layout: its name and the cache render along it."""

    name: str
    trajectory: Trajectory
    rgb: np.ndarray  # [N, H, W, 3] uint8
    hole: np.ndarray  # [N, H, W] bool, True where the cache has no point


def even_crop(traj: Trajectory) -> Trajectory:
    """The trajectory at an even frame size (H.264 needs it): cropping the last row / column keeps K."""
    from worldstereo.cameras import Camera

    W, H = traj.width - traj.width % 2, traj.height - traj.height % 2
    return Trajectory([Camera(c.K, c.c2w, W, H) for c in traj.cameras], traj.name)


def task_trajectories(scene: SceneDir, splat_scale: float = 1.0) -> list[TaskTrajectory]:
    """Every planned trajectory rendered from the input view's cache (cache/step_00.ply), as the
    release's pre-processing renders every trajectory of a task from one initial cache."""
    cache = PointCache.load(scene.cache_step(0))
    out = []
    for name in scene.load().trajectory_order:
        traj = even_crop(load_trajectory(scene.trajectory(name)))
        renders = [cache.render(c, splat_scale) for c in traj.cameras]
        out.append(TaskTrajectory(name, traj, np.stack([r.rgb for r in renders]), np.stack([r.hole for r in renders])))
    return out


def write_worldstereo_task(scene: SceneDir, out: Path, prompt: str, fps: int = 16, splat_scale: float = 1.0) -> list[str]:
    """Write the release's reconstruction task folder for `scene` at `out`; returns the trajectory names."""
    trajs = task_trajectories(scene, splat_scale)
    image = read_image(scene.input_image)
    with atomic_dir(out) as tmp:
        write_image(tmp / "image.png", image[: image.shape[0] - image.shape[0] % 2, : image.shape[1] - image.shape[1] % 2])
        (tmp / "prompt.json").write_text(json.dumps({"prompt": prompt}, indent=1))
        for t in trajs:
            folder = tmp / "renders" / (t.name if t.name.startswith("traj_") else f"traj_{t.name}")
            folder.mkdir(parents=True)
            (folder / "camera.json").write_text(json.dumps(to_worldstereo_camera_json(t.trajectory)))
            write_video(folder / "render.mp4", t.rgb, fps)
            write_video(folder / "render_mask.mp4", (t.hole * 255).astype(np.uint8), fps)
    return [t.name for t in trajs]
