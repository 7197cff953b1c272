"""Free space seen by a panorama: nothing synthesised may sit between the panorama's centre and a
surface it saw (equirect.EquirectCamera through memory.cache.violates_free_space), and world.ply
keeps no such point. Ground truth is the synthetic room's own ray caster."""

from __future__ import annotations

import numpy as np

from worldstereo.memory.cache import PointCache, violates_free_space, world_points
from worldstereo.panorama.equirect import EquirectCamera, angles_to_dirs, nearest_surface
from worldstereo.panorama.synthetic_room import Room, raycast, render_panorama

H = 128
MARGIN = 0.03


def _room_rays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random unit rays (the seam and the poles included) and the room's exact hit distance."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-np.pi, np.pi, n)
    theta[:20] = np.pi - 1e-4  # just left of the seam
    theta[20:40] = -np.pi + 1e-4  # just right of it
    phi = np.arcsin(rng.uniform(-1, 1, n))
    phi[40:50] = np.pi / 2 - 1e-3  # next to the zenith
    dirs = angles_to_dirs(theta, phi)
    t, _ = raycast(Room(), np.zeros_like(dirs), dirs)
    return dirs, t


def _min_distance_around(dirs: np.ndarray, step: float) -> np.ndarray:
    """Exact distance to the room's surfaces, the smallest over the ray and 8 rays tilted by `step`
    (radians) around it: what a point beside a silhouette may be compared against."""
    best = np.full(len(dirs), np.inf)
    a = np.cross(dirs, [0.0, 1.0, 0.0])
    a = np.where(np.linalg.norm(a, axis=1, keepdims=True) < 1e-6, [1.0, 0.0, 0.0], a)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(dirs, a)
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            d = dirs + step * (i * a + j * b)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            t, _ = raycast(Room(), np.zeros_like(d), d)
            best = np.minimum(best, t)
    return best


def test_points_in_front_of_what_the_panorama_saw_are_free_space():
    _, dist = render_panorama(Room(), H)
    observer = (EquirectCamera(2 * H, H), nearest_surface(dist))
    dirs, t = _room_rays(2000)
    in_front = dirs * (0.5 * t)[:, None]  # halfway to the surface: seen through
    behind = dirs * (1.3 * t)[:, None]  # behind the surface: hidden, not free
    on = dirs * t[:, None]
    free = violates_free_space(in_front, *observer)
    assert free.mean() > 0.97
    # the rest sit beside a silhouette: a nearer surface one or two pixels off their ray
    assert (_min_distance_around(dirs[~free], 2 * np.pi / H) < 0.5 * t[~free] / (1 - MARGIN)).all()
    assert not violates_free_space(behind, *observer).any()
    assert violates_free_space(on, *observer).mean() < 0.01  # only at silhouettes, where neighbours are nearer
    # unknown distance (0) marks nothing
    assert not violates_free_space(in_front, observer[0], np.zeros_like(dist)).any()


def test_nearest_surface_wraps_the_seam():
    d = np.full((4, 8), 5.0, np.float32)
    d[1, 0] = 2.0
    d[2, 3] = 0.0  # unknown: not a surface at 0 m
    out = nearest_surface(d)
    assert out[1, 7] == 2.0 and out[0, 1] == 2.0 and out[2, 1] == 2.0  # across the seam and around
    assert out[1, 3] == 5.0 and out[2, 3] == 5.0 and out[1, 5] == 5.0
    assert nearest_surface(np.zeros((4, 8), np.float32)).max() == 0.0


def test_world_points_never_keep_panorama_free_space():
    """A cache of step-0 panorama points plus synthesised ones (step 1) in front of, on and behind the
    room's surfaces: world_points with the panorama as observer drops exactly those the ray caster
    says lie in seen-through space, keeps the rest and every panorama point."""
    _, dist = render_panorama(Room(), H)
    observer = (EquirectCamera(2 * H, H), nearest_surface(dist))
    dirs, t = _room_rays(3000, seed=1)
    frac = np.random.default_rng(2).uniform(0.3, 1.5, len(t))
    pts = dirs * (frac * t)[:, None]
    n = len(pts)
    synthesised = PointCache(pts.astype(np.float32), np.zeros((n, 3), np.uint8), np.ones(n, np.float32),
                             np.full(n, 0.01, np.float32), np.ones(n, np.int16), np.arange(n, dtype=np.int32))
    step0 = PointCache(dirs.astype(np.float32) * 0.5, np.zeros((n, 3), np.uint8), np.ones(n, np.float32),
                       np.full(n, 0.01, np.float32), np.zeros(n, np.int16), np.zeros(n, np.int32))
    world = world_points(step0.concat(synthesised), observed=observer)
    kept = world.select(world.step == 1)
    assert (world.step == 0).sum() == n  # the panorama's own points are never removed
    # independent truth: the exact distance along each kept point's ray and the rays around it as far
    # as the map's 3 × 3 neighbourhood reaches (1.5 pixels)
    r = np.linalg.norm(kept.xyz.astype(np.float64), axis=1)
    t_min = _min_distance_around(kept.xyz / r[:, None], 1.5 * np.pi / H)
    assert (r >= (1 - MARGIN) * t_min - 1e-4).all()
    # and the check is not vacuous: the clearly seen-through ones went, the hidden ones stayed
    was_kept = np.zeros(n, bool)
    was_kept[kept.frame] = True
    assert (~was_kept[frac < 0.9]).mean() > 0.95  # the few kept sit beside silhouettes (checked above)
    assert set(np.flatnonzero(frac >= 1.0)) <= set(kept.frame.tolist())
