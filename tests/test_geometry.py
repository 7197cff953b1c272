import numpy as np
from scipy.spatial.transform import Rotation

from worldstereo.cameras import Camera, look_at
import pytest

from worldstereo.geometry import (as_4x4, c2w_to_w2c, depth_discontinuities, frustum_overlap, invert_rigid, project_points, robust_umeyama,
                                  umeyama, unproject_depth, voxel_downsample, w2c_to_c2w)


def test_umeyama_exact():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    R = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5])
    T = umeyama(src, dst)
    assert abs(T.s - 2.5) < 1e-10 and np.allclose(T.R, R) and np.allclose(T.t, [1, -2, 0.5])


def test_robust_umeyama_recovers_sim3_with_30pct_outliers():
    rng = np.random.default_rng(1)
    n = 2000
    src = rng.uniform(-1, 1, size=(n, 3))
    R = Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix()
    s, t = 0.7, np.array([0.3, 0.1, -1.2])
    dst = s * src @ R.T + t + rng.normal(scale=0.005, size=(n, 3))
    out = rng.choice(n, int(0.3 * n), replace=False)
    dst[out] += rng.uniform(0, 3, size=(len(out), 3))  # one-sided: biases a plain fit
    fit = robust_umeyama(src, dst)
    assert abs(fit.transform.s - s) < 5e-3
    assert np.degrees(np.arccos(np.clip((np.trace(fit.transform.R.T @ R) - 1) / 2, -1, 1))) < 0.5
    assert np.linalg.norm(fit.transform.t - t) < 1e-2
    # the outliers are recognised as such
    assert fit.inliers[out].mean() < 0.05 and np.delete(fit.inliers, out).mean() > 0.95
    # plain least squares is pulled away by the same outliers
    assert np.linalg.norm(umeyama(src, dst).t - t) > 0.2


def test_project_unproject_roundtrip():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    depth = np.random.default_rng(0).uniform(1, 3, (48, 64))
    c2w = look_at(np.array([0.2, -0.1, 0.0]), np.array([0.0, 0.0, 2.0]))
    pts = unproject_depth(depth, K, c2w).reshape(-1, 3)
    uv, z = project_points(pts, K, invert_rigid(c2w))
    v, u = np.mgrid[0:48, 0:64]
    assert np.allclose(uv[:, 0], u.ravel(), atol=1e-8) and np.allclose(uv[:, 1], v.ravel(), atol=1e-8)
    assert np.allclose(z, depth.ravel())


def _cam_yaw(deg: float) -> Camera:
    K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("y", deg, degrees=True).as_matrix()
    return Camera(K, c2w, 64, 48)


def test_frustum_overlap_identity_monotonic_opposite():
    a = _cam_yaw(0)
    assert frustum_overlap(a, _cam_yaw(0), 0.1, 10.0) == 1.0
    values = [frustum_overlap(a, _cam_yaw(d), 0.1, 10.0) for d in range(0, 91, 10)]
    assert all(x > y for x, y in zip(values, values[1:]) if x > 0), values
    assert values[-1] == 0.0
    assert frustum_overlap(a, _cam_yaw(180), 0.1, 10.0) == 0.0


def test_voxel_downsample_means():
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [1.01, 0, 0]])
    out, inv = voxel_downsample(pts, 0.1)
    assert len(out) == 2 and inv[0] == inv[1] != inv[2]
    assert np.allclose(out[inv[0]], [0.02, 0.02, 0.02])


def test_w2c_3x4_to_c2w_and_back():
    # camera at (1, 2, 3) looking along world −x: c2w columns are the camera axes in world
    c2w = np.array([[0.0, 0, -1, 1], [0, 1, 0, 2], [1, 0, 0, 3], [0, 0, 0, 1]])
    w2c = np.array([[0.0, 0, 1, -3], [0, 1, 0, -2], [-1, 0, 0, 1]])  # Rᵀ, −Rᵀt, by hand
    np.testing.assert_allclose(w2c_to_c2w(w2c), c2w, atol=1e-12)
    np.testing.assert_allclose(w2c_to_c2w(as_4x4(w2c)), c2w, atol=1e-12)
    np.testing.assert_allclose(c2w_to_w2c(c2w), w2c, atol=1e-12)
    batch = np.stack([w2c, w2c.astype(np.float32)])  # float32 as results.npz stores it
    out = w2c_to_c2w(batch)
    assert out.shape == (2, 4, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out[1], c2w, atol=1e-6)
    assert as_4x4(batch)[:, 3].tolist() == [[0, 0, 0, 1]] * 2
    with pytest.raises(ValueError, match="3, 4"):
        as_4x4(np.eye(3))


def test_depth_discontinuities_mark_both_sides_relative_to_the_nearer_depth():
    d = np.array([[1.0, 1.0, 1.04, 2.0],
                  [1.0, 1.0, 1.0, 1.052],
                  [1.0, 0.0, 1.0, np.nan]])
    edge = depth_discontinuities(d, 0.05)
    expect = np.array([[0, 0, 1, 1],   # 1.04 | 2.0 jump; 1.0 | 1.04 is within 5 %
                       [0, 0, 1, 1],   # 1.0 | 1.052: 5.2 % of the nearer (1.0), so both sides
                       [0, 0, 0, 0]],  # unknown depth (0, NaN) is never an edge nor makes one
                      bool)
    assert (edge == expect).all(), edge.astype(int)
    # the threshold is on the nearer depth: 1.052 vs 1.0 is 4.9 % of 1.052, still an edge on both sides
    assert depth_discontinuities(np.array([[1.0, 1.052]]), 0.05).all()
    assert not depth_discontinuities(np.array([[1.0, 1.049]]), 0.05).any()


def test_cache_and_aligner_drop_the_same_edge_pixels():
    from worldstereo.align.preprocess import surface_pixels
    from worldstereo.memory.cache import points_from_view

    rng = np.random.default_rng(0)
    d = np.where(rng.random((24, 32)) < 0.1, 0.0, rng.choice([2.0, 2.01, 3.0], size=(24, 32)))
    cam = Camera(np.array([[30.0, 0, 16], [0, 30, 12], [0, 0, 1]]), np.eye(4), 32, 24)
    rgb = np.zeros((24, 32, 3), np.uint8)
    kept = points_from_view(rgb, d, cam, 1.0, step=0, frame=0, edge_rel_thresh=0.05)
    surface = surface_pixels(d, 0.05)
    assert 0 < surface.sum() < (d > 0).sum()
    # the aligner also needs the 4 neighbours to have depth (normals); otherwise the same pixels
    pad = np.pad(d > 0, 1)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    cache_kept = (d > 0) & ~depth_discontinuities(d, 0.05)
    assert (surface == (cache_kept & inner)).all()
    assert not surface[0].any() and not surface[:, -1].any()  # image borders
    assert len(kept) == cache_kept.sum()
    np.testing.assert_allclose(np.sort(kept.xyz[:, 2]), np.sort(d[cache_kept]).astype(np.float32))
