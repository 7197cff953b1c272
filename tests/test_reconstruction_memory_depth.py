"""depth_estimation=True on a scene folder of ours: frame depth refined with the 3D cache and the bank."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from box_room import cameras, render  # noqa: E402

from worldstereo.cameras import Camera
from worldstereo.reconstruction.memory_depth import refine_with_memory, robust_scale_shift
from worldstereo.reconstruction.types import Frames

W, H = 96, 72


def _room(n: int = 5):
    K, poses = cameras(n, W, H, 70.0)
    imgs, depths = zip(*(render(K, c, W, H) for c in poses))
    cams = [Camera(K, c, W, H) for c in poses]
    return Frames(np.stack(imgs), cams), np.stack(depths).astype(np.float32)


def _write_cache(root: Path, frames: Frames, depth: np.ndarray, conf: float = 2.0) -> None:
    from worldstereo.memory.cache import points_from_view

    pts = None
    for i, cam in enumerate(frames.cameras):
        p = points_from_view(frames.images[i], depth[i], cam, conf, 0, i)
        pts = p if pts is None else pts.concat(p)
    pts.save(root / "cache.ply")


def test_robust_scale_shift_ignores_outliers():
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 4, 2000)
    ref = 0.8 * d + 0.1
    ref[:300] *= rng.uniform(1.5, 3, 300)  # 15 % gross outliers
    s, b = robust_scale_shift(d, ref)
    assert s == pytest.approx(0.8, abs=1e-3) and b == pytest.approx(0.1, abs=3e-3)


def test_wrong_scale_frame_is_corrected_by_the_cache(tmp_path):
    frames, truth = _room()
    _write_cache(tmp_path, frames, truth)
    given = truth.copy()
    given[2] *= 1.3  # frame 2 came out of the generator 30 % too far
    given[3, 20:40, 30:60] = 0.0  # frame 3 has a hole
    refined, rep = refine_with_memory(frames, given, tmp_path)
    assert rep["used"] and rep["cache_points"] > 1000 and rep["bank_views"] == 0
    f2 = rep["frames"][2]
    assert f2["scale"] == pytest.approx(1 / 1.3, rel=0.01) and abs(f2["shift"]) < 0.02
    assert f2["rel_err_before"] > 0.25 and f2["rel_err_after"] < 0.01
    ok = truth[2] > 0
    assert np.median(np.abs(refined[2][ok] - truth[2][ok]) / truth[2][ok]) < 0.005
    assert rep["frames"][3]["filled_px"] >= 0.9 * 20 * 30
    np.testing.assert_allclose(refined[3, 20:40, 30:60], truth[3, 20:40, 30:60], rtol=0.02)
    for i in (0, 1, 4):  # right frames stay (nearly) as they were
        assert rep["frames"][i]["scale"] == pytest.approx(1.0, abs=0.01)


def test_wrong_scale_frame_is_corrected_by_the_bank_alone(tmp_path):
    from worldstereo.memory.bank import MemoryBank

    frames, truth = _room()
    bank = MemoryBank(tmp_path / "memory_bank")
    for i in (0, 4):
        bank.add(frames.images[i], truth[i], frames.cameras[i], "input" if i == 0 else "orbit", 0, i)
    bank.save()
    given = truth.copy()
    given[2] *= 0.7
    refined, rep = refine_with_memory(frames, given, tmp_path)
    assert rep["used"] and rep["cache_points"] == 0 and rep["bank_views"] == 2
    assert rep["frames"][2]["scale"] == pytest.approx(1 / 0.7, rel=0.01)
    ok = truth[2] > 0
    assert np.median(np.abs(refined[2][ok] - truth[2][ok]) / truth[2][ok]) < 0.01


def test_folder_without_memory_is_unchanged(tmp_path):
    frames, truth = _room(2)
    out, rep = refine_with_memory(frames, truth, tmp_path)
    assert rep == {"used": False, "reason": "no cache.ply or memory_bank/ in the scene folder"}
    assert out is truth


def test_reconstruct_scene_folder_uses_the_memory(tmp_path):
    """A scene folder (results.npz + cache.ply) whose frame 2 has a 1.3× depth: the report in the
    metadata shows the cache's correction, and the mesh lies on the walls."""
    from box_room import box_distance

    from worldstereo.io.results import FrameResults, save_results
    from worldstereo.reconstruction import ReconstructionConfig, reconstruct_scene

    frames, truth = _room()
    _write_cache(tmp_path, frames, truth)
    given = truth.copy()
    given[2] *= 1.3
    w2c = np.stack([c.w2c[:3] for c in frames.cameras]).astype(np.float32)
    (tmp_path / "exports" / "npz").mkdir(parents=True)
    save_results(tmp_path / "exports" / "npz" / "results.npz",
                 FrameResults(given, np.ones_like(given), w2c, frames.K.astype(np.float32), frames.images))
    s = reconstruct_scene(tmp_path, config=ReconstructionConfig(resolution=96, texture_resolution=0))
    rep = s.metadata["memory_depth"]
    assert rep["used"] and rep["frames"][2]["scale"] == pytest.approx(1 / 1.3, rel=0.01)
    assert np.median(box_distance(s.mesh.vertices)) < 0.02
