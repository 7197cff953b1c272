"""Shared fixtures: tiny scenes made in the test, nothing downloaded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def textured_box_scene(width: int = 96, height: int = 72, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8, depth_m, K): a textured back wall at 3 m with a box at 1.8 m in front."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width]
    rgb = np.stack([
        127 + 100 * np.sin(u / 5.0 + rng.random()),
        127 + 100 * np.cos(v / 7.0 + rng.random()),
        127 + 100 * np.sin((u + v) / 9.0),
    ], -1).astype(np.uint8)
    depth = np.full((height, width), 3.0, np.float32)
    box = (slice(height // 3, 2 * height // 3), slice(width // 3, width // 2 + 6))
    depth[box] = 1.8
    rgb[box] = (rgb[box] * 0.5 + np.array([200, 40, 40]) * 0.5).astype(np.uint8)
    f = 0.9 * width
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    return rgb, depth, K


def plan_box_scene(tmp: Path, frames: int = 21):
    """The textured box scene written to tmp (p.png, d.npy) and planned into tmp/scene with one
    `up` trajectory of `frames` frames (geometric config); returns that GenerationConfig."""
    import cv2

    from worldstereo.cameras import PlannerConfig
    from worldstereo.pipeline.config import GenerationConfig, InputConfig, PlanConfig
    from worldstereo.pipeline.driver import open_scene, run_pipeline

    rgb, depth, K = textured_box_scene()
    cv2.imwrite(str(tmp / "p.png"), rgb[..., ::-1])
    np.save(tmp / "d.npy", depth)
    cfg = GenerationConfig(input=InputConfig(image=tmp / "p.png", depth=tmp / "d.npy",
                                             intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]), long_side=96),
                           plan=PlanConfig(order=("up",), planner=PlannerConfig(frames=frames)))
    run_pipeline(open_scene(tmp / "scene", create=True), cfg, until="plan")
    return cfg


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP barriers of 2 threads stall for
    milliseconds per op when another process holds a core (10× slower on small tensors)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def box_scene():
    return textured_box_scene()


@pytest.fixture
def tiny_inputs(tmp_path):
    """An image + depth on disk and the matching run_pipeline arguments."""
    import cv2

    rgb, depth, K = textured_box_scene()
    img = tmp_path / "photo.png"
    cv2.imwrite(str(img), rgb[..., ::-1])
    dep = tmp_path / "photo_depth.npy"
    np.save(dep, depth)
    args = ["--image", str(img), "--depth", str(dep), "--intrinsics", str(K[0, 0]), str(K[1, 1]), str(K[0, 2]),
            str(K[1, 2]), "--long-side", "96", "--frames", "6"]
    return img, dep, args


def sigint_as_in_a_terminal() -> None:
    """Popen preexec_fn: SIGINT back to its default in the child, as in a terminal's foreground job.
    A shell starts background jobs with SIGINT ignored (e.g. a CI script run with `&`), Python then
    installs no KeyboardInterrupt handler, and a Ctrl-C test would see its SIGINT ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
