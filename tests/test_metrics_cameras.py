"""Camera metrics: ATE equals evo's APE (Sim(3)) on TUM fr1_xyz; RotErr / TransErr invariants."""

from pathlib import Path

import numpy as np
import pytest

from worldstereo.metrics.cameras import (ape_rot_rmse, associate, ate_rmse, pairwise_auc, read_tum, rot_err,
                                         score_cameras, trans_err)

DATA = Path(__file__).resolve().parents[1] / "shared" / "data" / "tum_fr1_xyz"
if not DATA.exists():
    DATA = Path("/work/shared/data/tum_fr1_xyz")


def _rz(deg):
    a = np.radians(deg)
    R = np.eye(4)
    R[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return R


def _circle(n=12):
    c2w = []
    for k in range(n):
        T = _rz(10 * k)
        T[:3, 3] = [np.cos(k / 3), np.sin(k / 3), 0.1 * k]
        c2w.append(T)
    return np.stack(c2w)


def _evo_ape_rmse(relation_name: str) -> tuple[float, int]:
    """(evo's APE RMSE, Sim(3)-aligned as `evo_ape -as`, of rgbdslam against the TUM ground truth;
    the number of associated poses)."""
    pytest.importorskip("evo")
    from evo.core import metrics, sync
    from evo.tools import file_interface

    ref = file_interface.read_tum_trajectory_file(str(DATA / "groundtruth.txt"))
    est = file_interface.read_tum_trajectory_file(str(DATA / "rgbdslam.txt"))
    ref, est = sync.associate_trajectories(ref, est, max_diff=0.01)
    est.align(ref, correct_scale=True)
    ape = metrics.APE(getattr(metrics.PoseRelation, relation_name))
    ape.process_data((ref, est))
    return ape.get_statistic(metrics.StatisticsType.rmse), ref.num_poses


def _our_pairs():
    """(estimated, ground-truth) poses of the same association, read by our own reader."""
    ts_gt, gt = read_tum(DATA / "groundtruth.txt")
    ts_est, es = read_tum(DATA / "rgbdslam.txt")
    ia, ib = associate(ts_gt, ts_est, 0.01)
    return es[ib], gt[ia]


@pytest.mark.skipif(not DATA.exists(), reason="shared TUM data not found")
def test_ate_equals_evo_ape_sim3():
    evo_rmse, n_poses = _evo_ape_rmse("translation_part")
    es, gt = _our_pairs()
    assert len(gt) == n_poses
    ours, T = ate_rmse(es, gt)
    assert ours == pytest.approx(evo_rmse, rel=1e-9, abs=1e-12)
    assert 0 < ours < 0.1 and 0.5 < T.s < 2


@pytest.mark.skipif(not DATA.exists(), reason="shared TUM data not found")
def test_ape_rotation_equals_evo_angle_deg_sim3():
    evo_rmse, _ = _evo_ape_rmse("rotation_angle_deg")
    ours = ape_rot_rmse(*_our_pairs())
    assert ours == pytest.approx(evo_rmse, rel=1e-6)
    assert 0.5 < ours < 20


def test_rot_err_is_a_sum_and_its_mean_is_per_frame():
    c = _circle()
    turned = c.copy()
    turned[1:] = c[1:] @ _rz(2.0)  # every later frame 2° off, centres exact
    s = score_cameras(turned, c)
    assert s.rot_err_deg == pytest.approx(2.0 * (len(c) - 1), rel=1e-6)
    assert s.rot_err_mean_deg == pytest.approx(2.0, rel=1e-6)
    # APE: the Sim(3) of the (exact) centres is the identity, so each of the N−1 frames is 2° off
    assert s.ape_rot_deg == pytest.approx(2.0 * np.sqrt((len(c) - 1) / len(c)), rel=1e-6)


def test_rot_trans_err_zero_against_itself():
    c = _circle()
    assert rot_err(c, c) == pytest.approx(0, abs=1e-5)
    assert trans_err(c, c) == pytest.approx(0, abs=1e-12)
    assert pairwise_auc(c, c) == 1.0
    s = score_cameras(c, c)
    assert s.ate == pytest.approx(0, abs=1e-9)


def test_rot_err_equals_angle_times_frame_count():
    c = _circle()
    turned = c.copy()
    turned[1:] = c[1:] @ _rz(7.0)  # every frame after the first turned by 7° about its optical axis
    assert rot_err(turned, c) == pytest.approx(7.0 * (len(c) - 1), rel=1e-6)
    # camera centres unchanged → no translation error; invariant to a global similarity
    assert trans_err(turned, c) == pytest.approx(0, abs=1e-12)
    g = _rz(33) @ np.diag([1, 1, 1, 1.0])
    g[:3, 3] = [5, -2, 1]
    moved = g[None] @ c
    moved[:, :3, 3] *= 3.0
    assert rot_err(moved, c) == pytest.approx(0, abs=1e-5)
    assert trans_err(moved, c) == pytest.approx(0, abs=1e-9)
    assert ate_rmse(moved, c)[0] == pytest.approx(0, abs=1e-9)


def test_trans_err_known_offset():
    c = _circle(5)
    est = c.copy()
    est[-1, :3, 3] += [0.0, 0.0, 0.5]
    t_gt = (np.linalg.inv(c[0])[None] @ c)[:, :3, 3]
    t_es = (np.linalg.inv(est[0])[None] @ est)[:, :3, 3]
    want = np.linalg.norm(t_es / np.linalg.norm(t_es, axis=1).max() - t_gt / np.linalg.norm(t_gt, axis=1).max(), axis=1).sum()
    assert trans_err(est, c) == pytest.approx(want)
    assert trans_err(est, c, norm="none") == pytest.approx(0.5)
