"""Panorama core: conventions, the release's bank layout and cameras.json, equirect ↔ views,
the panoramic cache from exact depth, the planner, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from worldstereo.cameras import Camera, PlannerConfig, intrinsics_from_fov, plan_trajectory
from worldstereo.errors import InputError
from worldstereo.geometry import project_points
from worldstereo.geometry import depth_discontinuities as depth_edges
from worldstereo.panorama import (MIDDLE_VIEWS, RELEASE_LAYOUT, PanoPlannerConfig, bank_cameras, load_panorama_view, make_bank,
                                  pivot_depths_from_distance, plan_panorama, points_from_panorama,
                                  read_bank_cameras, read_pano_bank, views_to_equirect, write_bank_cameras,
                                  write_pano_bank)
from worldstereo.panorama.bank import R_OURS_FROM_RELEASE, BankLayout, yaw_pitch_c2w
from worldstereo.panorama.cache import FOOTPRINT_SCALE, cache_height, equirect_depth_edges, panorama_point_mask
from worldstereo.panorama.equirect import (angles_to_dirs, dirs_to_pixel, equirect_rays, pixel_solid_angle,
                                           pixel_to_angles)
from worldstereo.panorama.synthetic_room import Room, raycast, render_panorama, render_view
from worldstereo.panorama.views import camera_rays, distance_to_view_depth, equirect_to_view, view_maps

REPO = Path(__file__).resolve().parents[1]


def smooth_color(d: np.ndarray) -> np.ndarray:
    """A smooth colour field on the sphere [..., 3] (0..255): a function of the unit ray, so it
    has no seam and no pole singularity, and any view of it is known exactly."""
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    return np.stack([127 + 90 * np.sin(6 * x + 2 * y), 127 + 90 * np.cos(5 * z - 3 * y + 1),
                     127 + 90 * np.sin(4 * (x + z) + 5 * y)], -1)


def smooth_panorama(height: int) -> np.ndarray:
    return np.round(smooth_color(equirect_rays(height, 2 * height))).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(10 * np.log10(255.0**2 / np.mean(err**2)))


# --------------------------------------------------------------------------- conventions


def test_equirect_conventions_by_hand():
    H, W = 8, 16
    # the edge between columns W/2 - 1 and W/2 on the horizon (v = H/2 - 0.5) looks along +z
    theta, phi = pixel_to_angles(W / 2 - 0.5, H / 2 - 0.5, W, H)
    assert np.allclose(angles_to_dirs(theta, phi), [0, 0, 1])
    # a quarter turn to the right is +x, to the left -x, the seam (image edge) -z
    for u, d in ((3 * W / 4 - 0.5, [1, 0, 0]), (W / 4 - 0.5, [-1, 0, 0]), (-0.5, [0, 0, -1])):
        assert np.allclose(angles_to_dirs(*pixel_to_angles(u, H / 2 - 0.5, W, H)), d, atol=1e-12)
    # the top edge is the zenith (-y, up), the bottom edge the nadir
    assert np.allclose(angles_to_dirs(*pixel_to_angles(3.0, -0.5, W, H)), [0, -1, 0], atol=1e-12)
    assert np.allclose(angles_to_dirs(*pixel_to_angles(3.0, H - 0.5, W, H)), [0, 1, 0], atol=1e-12)
    # pixel -> ray -> pixel, with columns wrapped into [-0.5, W - 0.5)
    v, u = np.mgrid[0:H, 0:W].astype(float)
    u2, v2 = dirs_to_pixel(equirect_rays(H, W), W, H)
    assert np.allclose(u2, u) and np.allclose(v2, v)
    assert np.allclose(dirs_to_pixel(angles_to_dirs(np.radians(181.0), 0.2), W, H)[0],
                       dirs_to_pixel(angles_to_dirs(np.radians(-179.0), 0.2), W, H)[0])
    assert pixel_solid_angle(H, W).sum() * W == pytest.approx(4 * math.pi)


# --------------------------------------------------------------------------- bank and cameras.json


def test_bank_layout_matches_the_release_cameras_json(tmp_path):
    """Facts of the release's example pano_bank/cameras.json, written down by hand: 27 views
    "0000".."0026"; intrinsic [[416/tan 60°, 0, 416], [0, 240, 240], [0, 0, 1]]; extrinsic = w2c
    in a z-up world where view 0 looks along -x with +y to its right; views 1 / 2 pitch the same
    yaw up / down by atan(1/2); views 3..10 are level, 40° apart, view 3 turned right of view 0."""
    cams = bank_cameras()
    path = tmp_path / "cameras.json"
    write_bank_cameras(path, cams)
    data = json.loads(path.read_text())  # read by an independent reader
    assert list(data) == [f"{i:04d}" for i in range(27)]
    for entry in data.values():
        assert set(entry) == {"intrinsic", "extrinsic"}
        assert np.allclose(entry["intrinsic"], [[416 / math.tan(math.radians(60)), 0, 416], [0, 240, 240], [0, 0, 1]],
                           rtol=1e-6)
        assert np.asarray(entry["extrinsic"]).shape == (4, 4)
    assert np.allclose(data["0000"]["extrinsic"], [[0, 1, 0, 0], [0, 0, -1, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], atol=1e-12)
    s5 = 1 / math.sqrt(5)
    forward = {k: np.asarray(data[k]["extrinsic"])[2, :3] for k in data}  # w2c row 2 = optical axis in world
    assert np.allclose(forward["0001"], [-2 * s5, 0, s5]) and np.allclose(forward["0002"], [-2 * s5, 0, -s5])
    a = math.radians(40)
    assert np.allclose(forward["0003"], [-math.cos(a), math.sin(a), 0])  # release world: +y is view 0's right
    assert np.allclose(forward["0011"], [-math.cos(a) * 2 * s5, math.sin(a) * 2 * s5, s5])
    assert np.allclose(forward["0019"], [-math.cos(a) * 2 * s5, math.sin(a) * 2 * s5, -s5])
    # w2c, not c2w: a world point 2 m along view 0's gaze (-x) lands at camera z = +2
    assert np.allclose(np.asarray(data["0000"]["extrinsic"]) @ [-2, 0, 0, 1], [0, 0, 2, 1])
    # read back into our frame and convention: the same cameras within 1e-6
    back = read_bank_cameras(path)
    for c, b in zip(cams, back):
        assert (b.width, b.height) == (832, 480)
        assert np.allclose(b.c2w, c.c2w, atol=1e-6) and np.allclose(b.K, c.K, rtol=1e-6)
    assert np.allclose(cams[0].c2w, np.eye(4)) and cams[0].K[0, 2] == 415.5  # our centres at integers


def test_pano_bank_folder_round_trip(tmp_path):
    views = make_bank(smooth_panorama(128))
    write_pano_bank(tmp_path / "pano_bank", views)
    assert sorted(p.name for p in (tmp_path / "pano_bank" / "images").iterdir()) == [f"{i:04d}.png" for i in range(27)]
    back = read_pano_bank(tmp_path / "pano_bank")
    for a, b in zip(views, back, strict=True):
        assert np.array_equal(a.rgb, b.rgb) and b.depth_m is None
        assert np.allclose(a.camera.c2w, b.camera.c2w, atol=1e-9) and np.allclose(a.camera.K, b.camera.K)
        assert (b.camera.width, b.camera.height) == (832, 480)
    small = tmp_path / "pano_bank" / "images" / "0007.png"
    cv2.imwrite(str(small), np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(InputError, match="0007.png: view is 20x10, the bank's first view 832x480"):
        read_pano_bank(tmp_path / "pano_bank")


@pytest.mark.parametrize("content, problem", [
    ('{"0000": {"intrinsic": [[240, 0, 416], [0, 240, 240], [0, 0, 1]]}}', "view '0000' lacks 'intrinsic' or 'extrinsic'"),
    ('{"0000": {"intrinsic": [[240, 0, 416], [0, 240, 240], [0, 0, 1]], "extrinsic": [[2, 0, 0, 0], [0, 1, 0, 0], '
     '[0, 0, 1, 0], [0, 0, 0, 1]]}}', "view 0000 extrinsic is not a rigid world-to-camera transform"),
    ('{"0000": {"intrinsic": [[240, 0], [0, 240]], "extrinsic": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}}',
     "view 0000 intrinsic must be a finite 3x3 matrix, got shape (2, 2)"),
    ("[1, 2]", 'expected a non-empty object {"0000": {"intrinsic", "extrinsic"}, ...}'),
])
def test_bad_cameras_json_is_one_line(tmp_path, content, problem):
    path = tmp_path / "cameras.json"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        read_bank_cameras(path)
    assert e.value.one_line() == f"{path}: {problem}"


def test_release_world_mapping_is_a_rotation():
    assert np.allclose(R_OURS_FROM_RELEASE @ R_OURS_FROM_RELEASE.T, np.eye(3))
    assert np.linalg.det(R_OURS_FROM_RELEASE) == pytest.approx(1.0)
    assert np.allclose(R_OURS_FROM_RELEASE @ [0, 0, 1], [0, -1, 0])  # release up (+z) is our up (-y)


# --------------------------------------------------------------------------- equirect <-> views


def test_round_trip_equirect_bank_equirect_psnr():
    H = 512
    pano = smooth_panorama(H)
    views = make_bank(pano)
    assert len(views) == 27 and views[0].rgb.shape == (480, 832, 3)
    back, weight = views_to_equirect([v.rgb for v in views], [v.camera for v in views], H)
    _, phi = pixel_to_angles(0, np.arange(H), 2 * H, H)
    band = np.abs(np.degrees(phi)) < 60
    assert (weight[band] > 0).all()  # the bank sees every direction below 60° latitude
    assert psnr(back[band], pano[band]) > 35.0


@pytest.mark.parametrize("yaw, pitch", [(0.0, 90.0), (30.0, -90.0), (180.0, 0.0), (170.0, 60.0)])
def test_views_over_the_poles_and_the_seam_are_exact(yaw, pitch):
    """A view looking at a pole or across the seam shows the panorama's colour function on its
    own rays (no seam line, no pole smear)."""
    pano = smooth_panorama(512)
    cam = Camera(intrinsics_from_fov(320, 240, 100.0), yaw_pitch_c2w(yaw, pitch), 320, 240)
    got = equirect_to_view(pano, cam)
    rays, _ = camera_rays(cam)
    expect = smooth_color(rays / np.linalg.norm(rays, axis=-1, keepdims=True))
    assert psnr(got, expect) > 38.0


def test_shrinking_prefilters_instead_of_aliasing():
    """Columns alternating black / white, seen by a small view whose pixels each cover more than
    two columns: the prefilter averages them to grey; plain bilinear lookups (no prefilter)
    would hit black or white pixels (aliasing)."""
    H = 256
    stripes = np.zeros((H, 2 * H), np.float32)
    stripes[:, ::2] = 255.0
    cam = Camera(intrinsics_from_fov(24, 16, 60.0), yaw_pitch_c2w(10.0, 20.0), 24, 16)
    got = equirect_to_view(stripes, cam)
    assert np.abs(got - 127.5).max() < 1.0
    u, v, _ = view_maps(cam, 2 * H, H)
    plain = cv2.remap(stripes, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    assert np.abs(plain - 127.5).max() > 60.0


def test_a_point_seen_in_two_views_lands_on_one_panorama_pixel():
    H, W = 512, 1024
    pano = smooth_panorama(H)
    views = make_bank(pano)
    pt = 3.0 * angles_to_dirs(np.radians(22.0), np.radians(8.0))  # between views 0 (yaw 0°) and 3 (yaw 40°)
    direct = np.array(dirs_to_pixel(pt, W, H))
    seen = []
    for v in (views[0], views[3]):
        uv, z = project_points(pt[None], v.camera.K, v.camera.w2c)
        assert z[0] > 0 and 0 <= uv[0, 0] < 832 and 0 <= uv[0, 1] < 480
        ray = np.linalg.inv(v.camera.K) @ [uv[0, 0], uv[0, 1], 1.0]
        seen.append((np.array(dirs_to_pixel(v.camera.c2w[:3, :3] @ ray, W, H)), uv[0], v.rgb))
    assert np.allclose(seen[0][0], direct, atol=1e-9) and np.allclose(seen[1][0], direct, atol=1e-9)
    # and the two views show the panorama's colour there
    expect = cv2.remap(pano.astype(np.float32), np.float32([[direct[0]]]), np.float32([[direct[1]]]), cv2.INTER_LINEAR)[0, 0]
    for _, uv, rgb in seen:
        got = cv2.remap(rgb.astype(np.float32), np.float32([[uv[0]]]), np.float32([[uv[1]]]), cv2.INTER_LINEAR)[0, 0]
        assert np.abs(got - expect).max() < 3.0


def test_bank_views_match_perspective_renders_of_the_room():
    """Views cut from the ray-cast panorama equal the ray caster's own perspective renders:
    colour (off depth edges) and z-depth."""
    room = Room(boxes=Room().boxes[:1])
    pano, dist = render_panorama(room, 512)
    views = make_bank(pano, dist)
    for v in (views[0], views[5], views[13]):
        rgb, z = render_view(room, v.camera)
        edges = depth_edges(z, 0.02)
        edges = cv2.dilate(edges.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert psnr(v.rgb[~edges], rgb[~edges]) > 38.0
        rel = np.abs(v.depth_m - z) / z
        assert np.median(rel[~edges]) < 0.003 and np.quantile(rel[~edges], 0.99) < 0.015


# --------------------------------------------------------------------------- panoramic cache


def test_cache_from_exact_depth_matches_ray_cast_ground_truth():
    room = Room()
    H = 256
    pano, dist = render_panorama(room, H)
    cache = points_from_panorama(pano, dist)
    keep = panorama_point_mask(dist)
    rays = equirect_rays(H, 2 * H)[keep]
    t, _ = raycast(room, np.zeros_like(rays), rays)
    gt = rays * t[:, None]
    assert len(cache) == keep.sum() > 0.5 * keep.size * 2 / math.pi  # ~2/π of pixels survive subsampling
    err = np.linalg.norm(cache.xyz - gt, axis=1)
    assert err.max() <= 1e-6 * np.linalg.norm(gt, axis=1).max() * 4
    assert (cache.step == 0).all() and (cache.frame == 0).all()
    assert np.allclose(cache.size, FOOTPRINT_SCALE * t * math.pi / H, rtol=1e-6)
    # no flying pixels: every depth-edge pixel was dropped
    assert not (keep & equirect_depth_edges(dist, 0.04)).any()


def test_cache_height_matches_the_bank_views_pixel_pitch():
    fx = RELEASE_LAYOUT.K()[0, 0]  # ≈ 240.18: π·fx ≈ 754.5 → 755 rows, kept points π/755 rad apart
    assert cache_height(1024, fx) == 755 and abs(math.pi / 755 - 1 / fx) < 0.001 / fx
    assert cache_height(64, fx / 8) == 64  # never above the panorama's own height
    assert cache_height(4096, fx) == cache_height(1024, fx)  # the input's size does not matter


def test_panoramic_cache_renders_into_a_bank_view_without_cracks():
    """Bank view 0 of the cache at the release's ratio of panorama to view resolution: the enlarged
    footprint closes the cracks at the view's sides (measured: 4.3 % holes at footprint 1.0, 0.2 % at 1.5)."""
    room = Room()
    H = 512
    pano, dist = render_panorama(room, H)
    cam = bank_cameras(BankLayout(width=416, height=240))[0]  # 832×480 / 2 against 2048×1024 / 2
    holes = {}
    for scale in (1.0, FOOTPRINT_SCALE):
        r = points_from_panorama(pano, dist, footprint_scale=scale).render(cam)
        holes[scale] = r.hole.mean()
    assert holes[1.0] > 0.03 and holes[FOOTPRINT_SCALE] < 0.005


def test_cache_points_are_evenly_spread_over_the_sphere():
    H = 512
    dist = np.full((H, 2 * H), 2.0, np.float32)
    cache = points_from_panorama(np.zeros((H, 2 * H, 3), np.uint8), dist, edge_rel_thresh=None)
    # equal-area bands: equal ranges of sin(latitude) = -y / r
    band = np.clip(((-cache.xyz[:, 1] / 2.0 + 1) / 2 * 8).astype(int), 0, 7)
    counts = np.bincount(band, minlength=8)
    assert counts.max() / counts.min() < 1.06
    raw = np.bincount(np.clip(((np.sin(pixel_to_angles(0, np.arange(H), 2 * H, H)[1]) + 1) / 2 * 8).astype(int), 0, 7),
                      minlength=8)
    assert raw.max() / raw.min() > 2  # all pixels would crowd the polar bands


def test_depth_edges_close_the_seam():
    dist = np.full((16, 32), 2.0, np.float32)
    dist[:, -1] = 4.0  # a jump between the last column and the first (neighbours across the seam)
    edges = equirect_depth_edges(dist, 0.04)
    assert edges[:, 0].all() and edges[:, -1].all() and edges[:, -2].all() and not edges[:, 1].any()


# --------------------------------------------------------------------------- planner


def test_release_set_shapes():
    cams = bank_cameras()
    d = {0: 2.0, 5: 3.0, 8: 1.5}
    trajs = plan_panorama(cams, d)
    assert [t.name for t in trajs] == [f"view{k}_{kind}" for kind in ("right", "left", "aerial") for k in range(3)]
    for t in trajs:
        idx = MIDDLE_VIEWS[int(t.name[4])]
        start = cams[idx]
        assert len(t) == 21 and np.allclose(t.cameras[0].c2w, start.c2w, atol=1e-9)
        pivot = start.c2w[:3, :3] @ [0, 0, d[idx]]
        for c in t.cameras:  # every frame looks at the pivot, from the pivot distance
            uv, z = project_points(pivot[None], c.K, c.w2c)
            assert np.allclose(uv[0], c.K[:2, 2], atol=1e-6) and z[0] == pytest.approx(d[idx])
    right0 = trajs[0].cameras[-1]
    axis0, axis_end = cams[0].c2w[:3, 2], right0.c2w[:3, 2]
    assert math.degrees(math.acos(axis0 @ axis_end)) == pytest.approx(60.0)
    assert right0.center[0] > 0  # moved right of view 0 (world +x)
    aerial = trajs[6].cameras
    assert -aerial[9].center[1] == pytest.approx(2.0 * math.sin(math.radians(45)))  # risen 45° about the pivot
    assert aerial[-1].center[1] == pytest.approx(aerial[9].center[1])  # then circles at that height
    # view 1 is view 0's plan turned 120° about the vertical (same pivot depth)
    same = plan_panorama(cams, {0: 2.0, 5: 2.0, 8: 2.0})
    R = yaw_pitch_c2w(120.0, 0.0)
    for a, b in zip(same[0].cameras, same[1].cameras):
        assert np.allclose(R @ a.c2w, b.c2w, atol=1e-9)


def test_standard_set_is_the_photo_planner_in_each_view():
    cams = bank_cameras()
    trajs = plan_panorama(cams, {0: 2.0, 5: 2.0, 8: 2.0}, PanoPlannerConfig(set="standard", frames=9))
    assert [t.name for t in trajs][:3] == ["view0_orbit", "view1_orbit", "view2_orbit"] and len(trajs) == 12
    up = plan_trajectory("up", cams[0].K, 832, 480, 2.0, PlannerConfig(frames=9))
    assert np.allclose(trajs[3].c2w(), up.c2w())  # view 0's frame is the world frame
    R = yaw_pitch_c2w(240.0, 0.0)
    assert np.allclose(trajs[5].c2w(), R @ up.c2w())


def test_pivot_depths_from_the_panorama():
    dist = np.full((64, 128), 2.5, np.float32)  # a sphere of 2.5 m
    d = pivot_depths_from_distance(dist, bank_cameras())
    assert set(d) == set(MIDDLE_VIEWS)
    # median z-depth of a sphere seen by a 120° x 90° view: below the radius, above half of it
    assert 1.25 < d[0] < 2.5 and d[0] == pytest.approx(d[5]) == pytest.approx(d[8])
    z = distance_to_view_depth(dist, bank_cameras()[0])
    assert z[240, 416] == pytest.approx(2.5, rel=1e-3) and z[0, 0] < 1.3


# --------------------------------------------------------------------------- loading, bad input


def _write_pano(path: Path, w: int, h: int) -> None:
    rgb = smooth_panorama(h // 1)[:, :w] if w <= 2 * h else np.zeros((h, w, 3), np.uint8)
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def test_load_panorama_view_resizes_image_and_depth(tmp_path):
    img = tmp_path / "pano.png"
    _write_pano(img, 256, 128)
    depth = np.full((128, 256), 3.0, np.float32)
    depth[:, :10] = 0.0  # holes (read_depth: 0 = unknown; inf is an error)
    np.save(tmp_path / "d.npy", depth)
    p = load_panorama_view(img, tmp_path / "d.npy", working_width=128)
    assert p.rgb.shape == (64, 128, 3) and p.distance_m.shape == (64, 128) and p.original_size == (256, 128)
    assert set(np.unique(p.distance_m)) == {0.0, 3.0}  # nearest: no blended distances
    assert psnr(p.rgb, smooth_panorama(64)) > 30.0
    mm = tmp_path / "d.png"
    cv2.imwrite(str(mm), np.full((64, 128), 2500, np.uint16))  # 16-bit millimetres at working size
    assert np.allclose(load_panorama_view(img, mm, working_width=128).distance_m, 2.5)


@pytest.mark.parametrize("case", ["not_2to1", "depth_size", "depth_nan"])
def test_bad_panorama_inputs_are_one_line_errors(tmp_path, case):
    img = tmp_path / "pano.png"
    _write_pano(img, 300 if case == "not_2to1" else 256, 128)
    depth = np.full((128, 256), 2.0, np.float32)
    if case == "depth_size":
        depth = np.full((100, 200), 2.0, np.float32)
    if case == "depth_nan":
        depth[5, 7] = np.nan
    np.save(tmp_path / "d.npy", depth)
    expect = {
        "not_2to1": f"{img}: not an equirectangular panorama: 300x128 is not 2:1 (width = 2 x height)",
        "depth_size": f"{tmp_path / 'd.npy'}: depth is 200x100, matching neither the panorama 256x128 nor the working size 128x64",
        "depth_nan": f"{tmp_path / 'd.npy'}: depth contains 1 NaN and 0 inf values: mark unknown depth with 0",
    }[case]
    with pytest.raises(InputError) as e:
        load_panorama_view(img, tmp_path / "d.npy", working_width=128)
    assert e.value.one_line() == expect
    # through cli_entry as a script would run it: exit 2, that one line, no traceback
    code = ("import sys; from worldstereo.errors import cli_entry; from worldstereo.panorama import load_panorama_view\n"
            "cli_entry(lambda: load_panorama_view(sys.argv[1], sys.argv[2], working_width=128))()")
    r = subprocess.run([sys.executable, "-c", code, str(img), str(tmp_path / "d.npy")], cwd=REPO, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert r.returncode == 2 and r.stderr == f"error: {expect}\n" and r.stdout == ""


def test_aerials_are_lowered_to_stay_inside_the_room():
    """The release aerial rises 45° about a pivot a few metres away: in the synthetic room that goes
    through the ceiling. plan_inside lowers each aerial until its cameras stay inside what the
    panorama saw; the room's own box (not the distance map) checks the result."""
    from worldstereo.panorama.planner import plan_inside

    room = Room()
    _, dist = render_panorama(room, 128)
    cams = bank_cameras(BankLayout(width=208, height=120))
    cfg = PanoPlannerConfig(frames=9)
    pivots = pivot_depths_from_distance(dist, cams, cfg.views)
    plain = {t.name: t for t in plan_panorama(cams, pivots, cfg)}
    lo, hi = np.array(room.lo), np.array(room.hi)
    outside = lambda t: (~np.all((t.c2w()[:, :3, 3] > lo) & (t.c2w()[:, :3, 3] < hi), axis=1)).sum()  # noqa: E731
    assert sum(outside(t) for t in plain.values()) > 0  # the plain plan does leave the room
    trajs, lowered = plan_inside(cams, pivots, dist, cfg)
    assert [t.name for t in trajs] == list(plain) and set(lowered) <= {n for n in plain if n.endswith("_aerial")}
    assert lowered and all(0 <= up < 45 for up in lowered.values())
    for t in trajs:
        assert outside(t) == 0
        if t.name not in lowered:  # the rest are the plain plan's
            np.testing.assert_array_equal(t.c2w(), plain[t.name].c2w())
    # a far sphere: nothing to lower
    trajs, lowered = plan_inside(cams, pivots, np.full_like(dist, 100.0), cfg)
    assert lowered == {} and all(np.array_equal(t.c2w(), plain[t.name].c2w()) for t in trajs)
