"""Synthetic scenes: exact depth / K / poses, view-independent colour, seeded, fast enough."""

import time

import numpy as np
import pytest

from worldstereo.geometry import project_points, unproject_depth
from worldstereo.bench.builders import make_scene
from worldstereo.bench.synthetic_scene import PATH_NAMES, SCENE_KINDS, Box, Sphere


def _ray_through(cam, uv):
    """Rays of camera `cam` through sub-pixel positions uv [N, 2], scaled so t = z-depth."""
    K = cam.K
    d = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(uv))], 1)
    return d @ cam.c2w[:3, :3].T


@pytest.mark.parametrize("kind", SCENE_KINDS)
@pytest.mark.parametrize("exact", [True, False])
def test_depth_k_poses_reproject_exactly(kind, exact):
    """A's depth + K + pose, projected into B, hit B's surface at B's depth: to 1e-9 with float64
    depth from the ray caster, to float32 precision (amplified at grazing angles) from render()."""
    scene = make_scene(kind, seed=1)
    a = scene.default_camera(64, 48)
    b = scene.path("left", 5, 64, 48)[2]
    rgb_a, depth_a = scene.render(a)
    if exact:
        depth_a = scene.raycast(*scene.camera_rays(a))[0].reshape(48, 64)
    tol = 1e-9 if exact else 1e-3
    X = unproject_depth(depth_a, a.K, a.c2w).reshape(-1, 3)
    col_a = rgb_a.reshape(-1, 3)
    ok = np.all(np.isfinite(X), axis=1)
    X, col_a = X[ok], col_a[ok]
    uv, z = project_points(X, b.K, b.w2c)
    inside = (z > 0) & (uv[:, 0] > -0.5) & (uv[:, 0] < 63.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < 47.5)
    t, prim = scene.raycast(b.center, _ray_through(b, uv[inside]))
    zb = z[inside]
    visible = np.abs(t - zb) <= tol * zb
    assert visible.mean() > 0.3  # the two views share a good part of the scene
    # every other point is occluded: B's ray stops before reaching it, never beyond
    assert np.all(t[~visible] < zb[~visible])
    if exact:
        assert np.all(t[~visible] < zb[~visible] * (1 - 1e-6))
    # the colour is view-independent: B sees exactly A's colour at the shared points
    col_b = scene.shade(b.center + t[visible, None] * _ray_through(b, uv[inside][visible]), prim[visible])
    assert np.abs(col_b.astype(int) - col_a[inside][visible].astype(int)).max() <= 1


def test_rendered_maps_agree_at_pixel_centres():
    """B's depth map at the nearest pixel agrees with the reprojected depth of A on most pixels."""
    scene = make_scene("room", seed=0)
    a = scene.default_camera(96, 72)
    b = scene.path("orbit", 9, 96, 72)[4]
    _, depth_a = scene.render(a)
    _, depth_b = scene.render(b)
    X = unproject_depth(depth_a, a.K, a.c2w).reshape(-1, 3)
    uv, z = project_points(X[np.all(np.isfinite(X), 1)], b.K, b.w2c)
    ui, vi = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    inb = (ui >= 0) & (ui < 96) & (vi >= 0) & (vi < 72) & (z > 0)
    rel = np.abs(depth_b[vi[inb], ui[inb]] - z[inb]) / z[inb]
    assert np.mean(rel < 0.02) > 0.8


def test_samples_on_surface_visible_and_coloured_like_the_render():
    scene = make_scene("objects", seed=2)
    cam = scene.default_camera(64, 48)
    xyz, rgb = scene.sample_points(2000, seed=0, cameras=[cam])
    assert xyz.shape == (2000, 3) and rgb.shape == (2000, 3) and rgb.dtype == np.uint8
    assert scene.visible_from(xyz, [cam]).all()
    # each sample is a surface hit: a ray from the camera to it stops exactly there
    t, prim = scene.raycast(cam.center, xyz - cam.center)
    np.testing.assert_allclose(t, 1.0, atol=1e-6)
    np.testing.assert_array_equal(scene.shade(xyz, prim), rgb)
    # solid primitives: no sample buried inside another
    for p in scene.primitives:
        if isinstance(p, Sphere):
            assert np.all(np.linalg.norm(xyz - p.center, axis=1) >= p.radius * (1 - 1e-6))


def test_seeded_and_distinct():
    r1, d1 = make_scene("outdoor", 4).render(make_scene("outdoor", 4).default_camera(48, 32))
    r2, d2 = make_scene("outdoor", 4).render(make_scene("outdoor", 4).default_camera(48, 32))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(d1, d2)
    r3, _ = make_scene("outdoor", 5).render(make_scene("outdoor", 5).default_camera(48, 32))
    assert np.any(r1 != r3)
    with pytest.raises(ValueError):
        make_scene("castle", 0)


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_paths_start_at_input_and_stay_clear(kind):
    scene = make_scene(kind, seed=3)
    for name in PATH_NAMES:
        path = scene.path(name, 7, 32, 24)
        assert len(path) == 7
        np.testing.assert_allclose(path[0].c2w, np.eye(4), atol=1e-9)
        for cam in path:  # never inside a solid
            for p in scene.primitives:
                if isinstance(p, Sphere):
                    assert np.linalg.norm(cam.center - p.center) > p.radius
                elif isinstance(p, Box) and not p.is_room:
                    assert np.any(np.abs((cam.center - p.center) @ p.R) > p.half)


def test_render_speed_256x192():
    scene = make_scene("outdoor", 0)
    cam = scene.default_camera(256, 192)
    t0 = time.perf_counter()
    rgb, depth = scene.render(cam)
    assert time.perf_counter() - t0 < 1.0
    assert rgb.shape == (192, 256, 3) and depth.dtype == np.float32
    assert np.isinf(depth).any() and np.isfinite(depth).mean() > 0.5  # sky and ground
