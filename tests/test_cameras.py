import json

import numpy as np
import pytest

from worldstereo.cameras import (PlannerConfig, load_trajectory, plan_trajectory, save_trajectory, to_nerf_transforms,
                                 to_worldstereo_camera_json, trajectory_from_nerf)
from worldstereo.errors import InputError

K = np.array([[80.0, 0, 47.5], [0, 80.0, 35.5], [0, 0, 1]])
D = 3.0
PIVOT = np.array([0.0, 0.0, D])


def _plan(name, **kw):
    return plan_trajectory(name, K, 96, 72, D, PlannerConfig(frames=9, **kw))


def _looks_at_pivot(traj):
    for c in traj.cameras:
        to_pivot = PIVOT - c.center
        assert np.allclose(c.c2w[:3, 2], to_pivot / np.linalg.norm(to_pivot), atol=1e-9)
        # rigid, right-handed, image y points towards world down (no roll)
        R = c.c2w[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0
        assert abs(c.c2w[:3, 0] @ np.array([0, 1.0, 0])) < 1e-9


def test_up_ends_45_deg_above_pivot():
    t = _plan("up")
    assert np.allclose(t.cameras[0].c2w, np.eye(4), atol=1e-12)  # frame 0 is the input camera
    v = t.cameras[-1].center - PIVOT
    elevation = np.degrees(np.arctan2(-v[1], -v[2]))  # world up is −y
    assert abs(elevation - 45.0) < 1e-9 and abs(np.linalg.norm(v) - D) < 1e-9
    _looks_at_pivot(t)


@pytest.mark.parametrize("name,sign", [("left", -1), ("right", 1)])
def test_left_right_turn_90_deg_about_pivot(name, sign):
    t = _plan(name)
    v = t.cameras[-1].center - PIVOT
    assert abs(v[1]) < 1e-12 and abs(np.linalg.norm(v) - D) < 1e-9
    azimuth = np.degrees(np.arctan2(v[0], -v[2]))
    assert abs(azimuth - sign * 90.0) < 1e-9
    _looks_at_pivot(t)
    # the released WorldStereo 2.0 uses 180°: a parameter
    v180 = _plan(name, side_deg=180.0).cameras[-1].center - PIVOT
    assert np.allclose(v180, [0, 0, D], atol=1e-9)


def test_orbit_closes_in_image_plane():
    t = _plan("orbit")
    centers = np.stack([c.center for c in t.cameras])
    assert np.allclose(centers[0], centers[-1], atol=1e-12)
    assert np.allclose(centers[:, 2], 0.0) and np.allclose(np.linalg.norm(centers[:, :2], axis=1), 0.3 * D)
    _looks_at_pivot(t)


def test_json_roundtrip(tmp_path):
    t = _plan("up")
    save_trajectory(t, tmp_path / "up.json")
    back = load_trajectory(tmp_path / "up.json")
    assert back.name == "up" and len(back) == len(t) and (back.width, back.height) == (96, 72)
    for a, b in zip(t.cameras, back.cameras):
        assert np.allclose(a.c2w, b.c2w) and np.allclose(a.K, b.K)


def test_worldstereo_camera_json_reads_same_cameras(tmp_path):
    t = _plan("left")
    p = tmp_path / "camera.json"
    p.write_text(json.dumps(to_worldstereo_camera_json(t)))
    back = load_trajectory(p)
    for a, b in zip(t.cameras, back.cameras):
        assert np.allclose(a.c2w, b.c2w, atol=1e-12) and np.allclose(a.K, b.K)
    # a single shared intrinsic and 3x4 extrinsics are accepted too (Uni3C-style cam_info.json)
    data = {"w": 96, "h": 72, "intrinsics": K.tolist(), "extrinsics": [c.w2c[:3].tolist() for c in t.cameras]}
    p2 = tmp_path / "cam_info.json"
    p2.write_text(json.dumps(data))
    back2 = load_trajectory(p2)
    assert np.allclose(back2.cameras[-1].c2w, t.cameras[-1].c2w, atol=1e-12)


def test_nerf_transforms_roundtrip():
    t = _plan("right")
    nerf = to_nerf_transforms(t)
    # OpenGL convention: the camera looks down its −z axis
    c = t.cameras[-1]
    assert np.allclose(-np.asarray(nerf["frames"][-1]["transform_matrix"])[:3, 2], c.c2w[:3, 2])
    back = trajectory_from_nerf(nerf)
    for a, b in zip(t.cameras, back.cameras):
        assert np.allclose(a.c2w, b.c2w) and np.allclose(a.K, b.K)


def test_non_rigid_matrix_is_rejected(tmp_path):
    t = _plan("up")
    d = json.loads(json.dumps({"width": 96, "height": 72, "frames": [{"c2w": c.c2w.tolist(), "K": c.K.tolist()} for c in t.cameras]}))
    d["frames"][3]["c2w"][0][0] = 2.0
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match="frame 3 c2w is not a rigid"):
        load_trajectory(p)
