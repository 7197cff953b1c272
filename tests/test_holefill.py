"""Background-side hole filling: plane extension, harmonic inverse depth, colour, provenance confidence."""

from __future__ import annotations

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.generate.holefill import (KIND_EXTRAPOLATED, KIND_INTERPOLATED, KIND_OBSERVED, KIND_PLANE,
                                           confidence_of, fill_holes, fit_planes, harmonic_fill)
from worldstereo.memory.cache import PointCache, points_from_view, violates_free_space, world_points

H, W, F = 96, 128, 100.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])


def _rays() -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return (u - K[0, 2]) / F, (v - K[1, 2]) / F  # camera-space ray per unit depth (x, y)


def _room_depth(with_card: bool, cam_x: float = 0.0) -> np.ndarray:
    """Depth of a floor (y = 1, OpenCV y down) and a wall (z = 6), optionally a card at z = 3 in front."""
    rx, ry = _rays()
    with np.errstate(divide="ignore"):
        floor = np.where(ry > 0, 1.0 / ry, np.inf)
    depth = np.minimum(floor, 6.0)
    if with_card:
        x, y = cam_x + 3.0 * rx, 3.0 * ry
        depth = np.where((x > -0.6) & (x < 0.3) & (y > -0.5) & (y < 0.9), 3.0, depth)
    return depth


def test_plane_extension_recovers_floor_and_wall_behind_a_box():
    rgb = np.full((H, W, 3), 128, np.uint8)
    cam0 = Camera(K, np.eye(4), W, H)
    depth0 = _room_depth(True)
    cache = points_from_view(rgb, depth0, cam0, 1.0, 0, 0, edge_rel_thresh=None)  # keep the floor–wall crease
    planes = fit_planes(cache.xyz)
    assert len(planes) >= 2
    c2w = np.eye(4)
    c2w[0, 3] = 0.5  # step right: the floor and wall behind the card's left edge are disoccluded
    cam1 = Camera(K, c2w, W, H)
    r = cache.render(cam1)
    hole = r.hole
    assert hole.sum() > 200
    fill = fill_holes(r.rgb, r.depth, hole, cam1, planes, fallback_depth=4.0, observed=(cam0, depth0))
    gt = _room_depth(True, cam_x=0.5)  # floor and wall do not depend on x; the card moves left in the image
    on_plane = hole & (fill.kind == KIND_PLANE)
    assert on_plane.sum() >= 0.9 * hole.sum()
    rel = np.abs(fill.depth[on_plane] - gt[on_plane]) / gt[on_plane]
    # the rest: the card's silhouette pixels, which the render leaves open and the wall fills
    assert (rel < 0.01).mean() > 0.95, (rel < 0.01).mean()
    assert np.median(rel) < 1e-4


def test_harmonic_fill_reproduces_a_tilted_plane_exactly():
    v, u = np.mgrid[0:40, 0:50].astype(np.float64)
    values = (0.3 * u - 0.7 * v + 2.0)[..., None]
    hole = np.zeros((40, 50), bool)
    hole[8:33, 5:41] = True
    filled, solved = harmonic_fill(np.where(hole[..., None], 0.0, values), hole, ~hole)
    assert solved[hole].all()
    np.testing.assert_allclose(filled[..., 0], values[..., 0], atol=1e-9)


def test_harmonic_depth_of_a_tilted_plane_is_exact_through_fill_holes():
    rx, ry = _rays()
    inv = 0.2 + 0.05 * rx - 0.03 * ry  # a plane is linear in inverse depth over the image
    depth = 1.0 / inv
    hole = np.zeros((H, W), bool)
    hole[30:60, 40:80] = True
    cam = Camera(K, np.eye(4), W, H)
    fill = fill_holes(np.zeros((H, W, 3), np.uint8), np.where(hole, 0.0, depth), hole, cam, [], fallback_depth=1.0)
    np.testing.assert_allclose(fill.depth[hole], depth[hole], rtol=1e-6)


def test_hole_behind_a_red_object_in_front_of_a_blue_wall_is_blue():
    depth = np.full((H, W), 5.0)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (20, 40, 220)
    depth[20:70, 30:60] = 2.0
    rgb[20:70, 30:60] = (230, 20, 20)
    hole = np.zeros((H, W), bool)
    hole[20:70, 60:72] = True  # the disocclusion right of the object
    cam = Camera(K, np.eye(4), W, H)
    fill = fill_holes(np.where(hole[..., None], 0, rgb).astype(np.uint8), np.where(hole, 0.0, depth), hole, cam, [],
                      fallback_depth=5.0)
    got = fill.rgb[hole].astype(int)
    assert (got[:, 2] > 200).all() and (got[:, 0] < 40).all()
    np.testing.assert_allclose(fill.depth[hole], 5.0, rtol=1e-6)  # the wall's depth, not the object's


def test_confidence_orders_observed_plane_interpolated_extrapolated():
    depth = np.full((H, W), 5.0)  # a wall facing the camera
    hole = np.zeros((H, W), bool)
    hole[10:90, 20:110] = True  # so wide that its centre is far from every rim
    cam = Camera(K, np.eye(4), W, H)
    rgb = np.full((H, W, 3), 90, np.uint8)
    no_planes = fill_holes(rgb, np.where(hole, 0.0, depth), hole, cam, [], fallback_depth=5.0)
    assert (no_planes.kind[~hole] == KIND_OBSERVED).all()
    assert (no_planes.kind[hole] == KIND_INTERPOLATED).any() and (no_planes.kind[hole] == KIND_EXTRAPOLATED).any()
    wall = points_from_view(rgb, np.where(hole, 0.0, depth), cam, 1.0, 0, 0)
    with_planes = fill_holes(rgb, np.where(hole, 0.0, depth), hole, cam, fit_planes(wall.xyz), fallback_depth=5.0)
    assert (with_planes.kind[hole] == KIND_PLANE).all()
    observed = np.ones((H, W), np.float32)
    conf = {k: confidence_of(f.kind, observed)[f.kind == k]
            for f, k in ((no_planes, KIND_OBSERVED), (with_planes, KIND_PLANE), (no_planes, KIND_INTERPOLATED),
                         (no_planes, KIND_EXTRAPOLATED))}
    order = [KIND_OBSERVED, KIND_PLANE, KIND_INTERPOLATED, KIND_EXTRAPOLATED]
    for a, b in zip(order, order[1:]):
        assert conf[a].min() > conf[b].max() > 0


def test_world_points_drop_guesses_in_observed_free_space_and_low_confidence():
    cam = Camera(K, np.eye(4), W, H)
    depth = np.full((H, W), 5.0)
    xyz = np.array([[0, 0, 5.0], [0, 0, 3.0], [0, 0, 7.0], [0.1, 0, 7.0]], np.float32)  # 3.0: seen empty
    cache = PointCache(xyz, np.zeros((4, 3), np.uint8), np.array([1.0, 0.9, 0.6, 0.1], np.float32),
                       np.full(4, 0.01, np.float32), np.array([0, 1, 1, 1], np.int16), np.zeros(4, np.int32))
    world = world_points(cache, observed=(cam, depth))
    np.testing.assert_array_equal(world.xyz, xyz[[0, 2]])
    assert not violates_free_space(world.xyz[world.step > 0], cam, depth).any()


def test_a_plane_carries_its_own_texture_mirrored_past_the_observed_edge():
    """A striped wall seen in columns < 98 only: hole pixels past that edge take the stripes mirrored
    about it (column c shows what column 2·97 − c saw), not a smooth blend from the rim."""
    from worldstereo.generate.holefill import plane_texture

    cam = Camera(K, np.eye(4), W, H)
    depth = np.full((H, W), 5.0)
    cols = np.broadcast_to(np.arange(W), (H, W))
    rgb = np.stack([(cols * 37) % 256, np.full((H, W), 60), (cols * 11) % 256], -1).astype(np.uint8)
    hole = cols >= 98
    wall = points_from_view(rgb, np.where(hole, 0.0, depth), cam, 1.0, 0, 0, edge_rel_thresh=None)
    planes = fit_planes(wall.xyz)
    assert len(planes) == 1
    flat = fill_holes(np.where(hole[..., None], 0, rgb).astype(np.uint8), np.where(hole, 0.0, depth), hole, cam,
                      planes, fallback_depth=5.0)
    planes[0].texture = plane_texture(planes[0], wall.xyz, wall.rgb, tol=0.05)
    tex = fill_holes(np.where(hole[..., None], 0, rgb).astype(np.uint8), np.where(hole, 0.0, depth), hole, cam,
                     planes, fallback_depth=5.0)
    assert (tex.kind[hole] == KIND_PLANE).all() and np.allclose(tex.depth[hole], 5.0, rtol=1e-5)
    mirrored = rgb[:, np.clip(2 * 97 - np.arange(98, W), 0, W - 1)]
    assert (tex.rgb[:, 98:] == mirrored).all(axis=-1).mean() > 0.99
    # the rim blend it replaces has none of the stripes' contrast
    assert flat.rgb[:, 110:, 0].astype(float).std() < 0.3 * tex.rgb[:, 110:, 0].astype(float).std()


def test_mirror_into_reflects_back_and_forth():
    from worldstereo.generate.holefill import mirror_into

    got = mirror_into(np.array([0.5, 1.2, 2.5, -0.3, 3.1]), np.array(0.0), np.array(1.0))
    np.testing.assert_allclose(got, [0.5, 0.8, 0.5, 0.3, 0.9])
