"""The two-view diagnosis (benchmarks/bench_two_view.py) recovers a known relative pose from exact matches."""

import numpy as np
from scipy.spatial.transform import Rotation

from benchmarks.bench_two_view import project_true, refine_two_view, relative_pose, rotation_deg


def _camera(rotvec_deg, centre) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    c2w[:3, 3] = centre
    return c2w


def test_sampson_refinement_recovers_a_perturbed_relative_rotation():
    K = np.array([[110.0, 0, 64], [0, 110.0, 48], [0, 0, 1]])
    c2w_i, c2w_j = _camera([2.0, -5.0, 1.0], [0.3, 0.0, 0.1]), _camera([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:96, 0:128]
    depth = 2.0 + 3.0 * rng.random((96, 128))  # every pixel at its own depth: no plane, no degeneracy
    pix = np.stack([u.ravel(), v.ravel()], 1)[rng.choice(96 * 128, 800, replace=False)]
    uv_j, z = project_true(depth, K, c2w_i, c2w_j, pix)
    inside = (uv_j[:, 0] > 0) & (uv_j[:, 0] < 127) & (uv_j[:, 1] > 0) & (uv_j[:, 1] < 95)
    R_true, t_true = relative_pose(c2w_i, c2w_j)
    R0 = Rotation.from_rotvec(np.radians([1.5, -1.0, 0.5])).as_matrix() @ R_true  # 1.9° off
    assert rotation_deg(R0, R_true) > 1.5
    R = refine_two_view(pix[inside].astype(float), uv_j[inside], K, R0, t_true + [0.05, -0.02, 0.03])
    assert rotation_deg(R, R_true) < 1e-3
