"""Point-cloud metrics against brute force; alignment recovers a known similarity."""

import numpy as np
import pytest

from worldstereo.geometry import Sim3, umeyama, voxel_downsample
from worldstereo.metrics.pointcloud import (align_to_gt, first_camera_alignment, fscore_auc, icp_sim3,
                                            nn_distances, nn_distances_reference, score_point_clouds)


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx


def test_nn_distances_match_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(200, 3))
    np.testing.assert_allclose(nn_distances(a, b), nn_distances_reference(a, b), rtol=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.2])
def test_scores_equal_brute_force(tau):
    rng = np.random.default_rng(1)
    gt = rng.uniform(-1, 1, size=(400, 3))
    rec = np.concatenate([gt[:300] + rng.normal(scale=0.05, size=(300, 3)), rng.uniform(-1, 1, size=(50, 3))])
    s = score_point_clouds(rec, gt, tau=tau)
    # brute force on the τ/2-downsampled clouds, exactly as the toolbox does
    r_ds, g_ds = voxel_downsample(rec, tau / 2)[0], voxel_downsample(gt, tau / 2)[0]
    D = np.linalg.norm(r_ds[:, None] - g_ds[None], axis=2)
    d_rg, d_gr = D.min(1), D.min(0)
    p, r = np.mean(d_rg < tau), np.mean(d_gr < tau)
    assert s.precision == pytest.approx(p) and s.recall == pytest.approx(r)
    assert s.fscore == pytest.approx(2 * p * r / (p + r))
    assert s.accuracy_mean == pytest.approx(d_rg.mean()) and s.accuracy_median == pytest.approx(np.median(d_rg))
    assert s.completeness_mean == pytest.approx(d_gr.mean())
    assert s.completeness_median == pytest.approx(np.median(d_gr))
    ts = tau * np.arange(1, 101) / 100
    f = [2 * np.mean(d_rg < t) * np.mean(d_gr < t) / max(np.mean(d_rg < t) + np.mean(d_gr < t), 1e-300) for t in ts]
    assert s.auc == pytest.approx(np.mean(f))
    assert (s.n_rec, s.n_gt) == (len(r_ds), len(g_ds))


def test_perfect_and_empty():
    pts = np.random.default_rng(2).uniform(size=(500, 3))
    s = score_point_clouds(pts, pts, tau=0.01)
    assert s.fscore == 1.0 and s.accuracy_mean == 0.0 and s.auc == 1.0
    e = score_point_clouds(np.zeros((0, 3)), pts, tau=0.01)
    assert e.fscore == 0.0 and e.recall == 0.0 and np.isnan(e.accuracy_mean)
    assert fscore_auc(np.zeros(0), np.zeros(3), 1.0) == 0.0


def test_umeyama_recovers_known_similarity():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(100, 3))
    R, s, t = _rot([1, 2, 3], 40), 2.5, np.array([0.3, -1.0, 4.0])
    T = umeyama(src, s * src @ R.T + t)
    assert T.s == pytest.approx(s) and np.allclose(T.R, R) and np.allclose(T.t, t)


def test_icp_with_scale_recovers_similarity_from_nearby_start():
    rng = np.random.default_rng(4)
    gt = rng.uniform(-1, 1, size=(3000, 3)) * [2, 1, 0.5]
    truth = Sim3(1.3, _rot([0, 1, 0], 10), np.array([0.1, 0.05, -0.2]))
    rec = (gt - truth.t) @ truth.R / truth.s  # truth maps rec onto gt
    init = Sim3(1.25, _rot([0, 1, 0], 8), np.array([0.08, 0.0, -0.15]))
    res = icp_sim3(rec, gt, init, iters=60)
    assert res.transform.s == pytest.approx(1.3, rel=1e-3)
    assert np.allclose(res.transform.apply(rec), gt, atol=1e-3)
    # with known correspondences: exact, no ICP needed
    T = align_to_gt(rec, gt, correspondences=(rec[:10], gt[:10]), icp=False)
    assert np.allclose(T.apply(rec), gt, atol=1e-9)


def test_first_camera_alignment():
    c2w_rec = np.eye(4)
    c2w_rec[:3, :3], c2w_rec[:3, 3] = _rot([1, 0, 0], 30), [1, 2, 3]
    c2w_gt = np.eye(4)
    c2w_gt[:3, :3], c2w_gt[:3, 3] = _rot([0, 0, 1], -20), [-1, 0, 5]
    T = first_camera_alignment(c2w_rec, c2w_gt, scale=2.0)
    x_cam = np.array([[0.1, 0.2, 1.5]])
    x_rec = x_cam @ c2w_rec[:3, :3].T + c2w_rec[:3, 3]
    x_gt = (2.0 * x_cam) @ c2w_gt[:3, :3].T + c2w_gt[:3, 3]
    np.testing.assert_allclose(T.apply(x_rec), x_gt, atol=1e-12)
