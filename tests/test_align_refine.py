"""Issue 15: camera refinement, rejection of failed frames, the support filter of the canonical cloud."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from configs.reconstruct import fast
from worldstereo.align.deform import DeformConfig
from worldstereo.align.fuse import FuseConfig, support_filter
from worldstereo.align.icp import (FrameState, Matches, bearing_polish, merge_frame, sequential_align,
                                   world_pointmap)
from worldstereo.align.pipeline import CAMERAS_FILE, refined_c2w, run_reconstruct
from worldstereo.align.preprocess import frame_points
from worldstereo.align.voxel_model import VoxelModel
from worldstereo.bench.builders import SyntheticConfig, make_inconsistent
from worldstereo.bench.writers import write_results_folder
from worldstereo.cameras import load_trajectory
from worldstereo.metrics.cameras import geodesic_deg

EXACT = dict(scale_drift=0.0, warp_amp=0.0)


def _frames(data, points):
    cfg = fast()
    cfg.preprocess.points_per_frame = points
    return cfg, [frame_points(data.results, i, cfg.preprocess) for i in range(len(data.results))]


def test_known_camera_error_is_corrected_within_0_2_degrees():
    data = make_inconsistent(SyntheticConfig(frames=3, width=96, height=72, rigid_rot_deg=2.0, **EXACT))
    cfg, frames = _frames(data, 4000)
    given_err = geodesic_deg(data.true_c2w[1][:3, :3], frames[1].c2w_given[:3, :3])
    assert given_err == pytest.approx(2.0, abs=1e-3)  # the error we put in
    res = sequential_align(frames, cfg.icp, cfg.deform, data.scale)
    for k in (1, 2):
        c2w = refined_c2w(frames[k], res.states[k])
        assert geodesic_deg(data.true_c2w[k][:3, :3], c2w[:3, :3]) < 0.2
        assert np.linalg.norm(c2w[:3, 3] - data.true_c2w[k][:3, 3]) < 0.02 * data.scale  # measured 1.3 %
    assert res.rejected == []


def test_bad_frame_is_rejected_and_reported(tmp_path):
    data = make_inconsistent(SyntheticConfig(frames=6, width=80, height=60, bad_frames=1))
    assert len(data.bad_frames) == 1
    write_results_folder(tmp_path, data)
    cfg = fast()
    cfg.preprocess.frames, cfg.preprocess.stride, cfg.preprocess.points_per_frame = 6, 1, 2500
    out = run_reconstruct(tmp_path, cfg.preprocess, cfg.icp, cfg.deform, cfg.global_opt, cfg.inverse,
                          tensorboard=False)
    metrics = json.loads((tmp_path / "align" / "metrics.json").read_text())
    assert metrics["rejected_frames"] == list(data.bad_frames) == out.metrics.rejected_frames
    rec = {r["frame"]: r["rejected"] for r in metrics["per_frame"]}
    assert [f for f, bad in rec.items() if bad] == list(data.bad_frames)
    why = {r["frame"]: r["reject_reason"] for r in metrics["per_frame"]}
    assert why[data.bad_frames[0]] in ("inliers", "matches") and set(why.values()) - {""} == {why[data.bad_frames[0]]}
    traj = load_trajectory(tmp_path / "align" / CAMERAS_FILE)  # an independent reader
    assert len(traj) == 6
    bad = data.bad_frames[0]  # a rejected frame keeps its given camera
    np.testing.assert_allclose(traj.c2w()[bad], data.results.c2w()[bad], atol=1e-6)
    # no point of the bad frame reached the canonical cloud
    from worldstereo.io.ply import read_ply

    assert bad not in set(read_ply(tmp_path / "align" / "canonical.ply")["frame"].tolist())
    # its deformation is flagged, and deformation-aware training does not warp through it
    from worldstereo.align.inverse import load_inverse_deformations

    with np.load(tmp_path / "align" / "deformations.npz") as z:
        assert z["rejected"].tolist() == [k == bad for k in z["frame_index"].tolist()]
    assert load_inverse_deformations(tmp_path).frame_indices == [k for k in range(6) if k != bad]


def test_inverse_round_trip_is_judged_on_accepted_frames_only(capsys):
    """A rejected frame's deformation bent random depth onto the model: its inverse is written, but
    it neither sets the reported round trip nor raises the warning (which names the worst frame)."""
    from worldstereo.align.pipeline import _fit_inverses

    data = make_inconsistent(SyntheticConfig(frames=4, width=80, height=60, **EXACT))
    cfg, frames = _frames(data, 2000)
    res = sequential_align(frames, cfg.icp, cfg.deform, data.scale)
    assert res.rejected == []
    inv, clean = _fit_inverses(frames, res, cfg.inverse, data.scale)
    res.rejected = [2]
    _, clean_without_2 = _fit_inverses(frames, res, cfg.inverse, data.scale)
    res.rejected = []
    res.states[2].grid.values += np.random.default_rng(0).normal(0, 0.3 * data.scale, res.states[2].grid.values.shape)
    assert capsys.readouterr().err.count("round trip") == 0
    _, wild = _fit_inverses(frames, res, cfg.inverse, data.scale)  # frame 2 accepted: it counts
    assert wild.p95_max > 100 * clean.p95_max and "(frame 2)" in capsys.readouterr().err
    res.rejected = [2]
    inv, judged = _fit_inverses(frames, res, cfg.inverse, data.scale)  # rejected: it does not
    assert judged.p95_max == clean_without_2.p95_max <= clean.p95_max and capsys.readouterr().err.count("round trip") == 0
    assert len(inv) == 4  # every frame still has its inverse


def test_support_filter_keeps_every_point_seen_three_times_and_drops_floaters():
    data = make_inconsistent(SyntheticConfig(frames=3, width=96, height=72, **EXACT))
    _, frames = _frames(data, 3000)
    states = [FrameState(data.true_c2w[k].copy(), None) for k in range(3)]
    cams = [(st.A, f.K, world_pointmap(f, st, 0.05)) for f, st in zip(frames, states)]
    P = states[0].world(frames[0].xyz)  # frame 0's (undistorted) points
    # which of them frames 1 and 2 see too (their exact depth agrees within 0.5 %)
    seen = np.ones(len(P), bool)
    for k in (1, 2):
        w2c = np.linalg.inv(data.true_c2w[k])
        p = P @ w2c[:3, :3].T + w2c[:3, 3]
        u = np.rint(frames[k].K[0, 0] * p[:, 0] / p[:, 2] + frames[k].K[0, 2]).astype(int)
        v = np.rint(frames[k].K[1, 1] * p[:, 1] / p[:, 2] + frames[k].K[1, 2]).astype(int)
        H, W = data.true_depth[k].shape
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        z = np.full(len(P), np.nan)
        z[inside] = data.true_depth[k][v[inside], u[inside]]
        seen &= inside & (np.abs(z - p[:, 2]) < 0.005 * p[:, 2]) & np.isfinite(cams[k][2][np.clip(v, 0, H - 1), np.clip(u, 0, W - 1)]).all(1)
    assert seen.sum() > 500
    floaters = P[:300] * 0.85  # pulled 15 % towards frame 0's camera: in everyone's free space
    fused = support_filter(np.concatenate([P, floaters]), np.ones(len(P) + 300), cams, FuseConfig(), data.scale)
    keep, stats = fused.keep, fused.stats
    assert keep[: len(P)][seen].all()
    assert keep[len(P):].mean() < 0.05
    assert stats.points_before == len(P) + 300 and stats.points_after == keep.sum()
    # the consensus leaves exact points on their surfaces: with their normals each frame's vote is
    # the plane at P's own pixel (at the rounded pixel's depth alone, the 95th percentile was 5e-3)
    normals = frames[0].normal @ data.true_c2w[0][:3, :3].T
    moved = support_filter(P, np.ones(len(P)), cams, FuseConfig(), data.scale, normals)
    shift = np.linalg.norm(moved.xyz - P, axis=1)[moved.keep] / data.scale
    assert np.median(shift) < 1e-5 and np.percentile(shift, 95) < 1e-3


def _two_plane_frames(eps: list[float], centres: list[tuple[float, float, float]],
                      far_z: float = 4.0) -> tuple[np.ndarray, list, np.ndarray]:
    """Cameras at `centres` looking down +z at a near plane (z = 1, y < 0: image rows above the
    centre) and a far plane (z = far_z); frame j's depth × (1 + eps[j]). Returns the exact points of
    frame 0's pixels [N, 3], the (c2w, K, point map) triples and which points are far."""
    H, W = 48, 64
    K = np.array([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    cams, P, far = [], None, None
    for e, c in zip(eps, centres):
        c2w = np.eye(4)
        c2w[:3, 3] = c
        top_near = (v < K[1, 2]) & (c[2] < 1.0)
        depth = np.where(top_near, 1.0 - c[2], far_z - c[2])
        cams.append((c2w, K, rays * (depth * (1 + e))[..., None] + c2w[:3, 3]))
        if P is None:
            P, far = (rays * depth[..., None] + c2w[:3, 3]).reshape(-1, 3), ~top_near.reshape(-1)
    return P, cams, far


def test_depth_limit_drops_points_past_the_expected_error_by_hand():
    """Frame 0 exact (its pixels are the points), frame 1 0.5 closer with depth +0.4 %, frame 2 1.0
    back with −0.9 %, frame 3 beside frame 0 with +5 % (it supports nothing: it sees through).
    Supporting observations: frame 0's 0, frame 1's 0.004 (fewer: it sees less), frame 2's 0.009, so
    their median is 0.004 and σ_rel = 1.4826 × 0.004. A point's nearest supporting depth is 1 or 0.5
    (near plane) and 4 or 3.5 (far plane; frame 2 sees them at 5): a limit of 4.5 keeps everything,
    one of 3 drops the far plane; consistent frames or max_error 0 keep everything."""
    eps = [0.0, 0.004, -0.009, 0.05]
    centres = [(0, 0, 0), (0.05, 0, 0.5), (0, 0, -1.0), (0.1, 0, 0)]
    P, cams, far = _two_plane_frames(eps, centres)
    base = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=0.0), 1.0).keep
    assert base.mean() > 0.9 and base[far].sum() > 500  # frame 3 sees through every point, once: kept
    sigma = 1.4826 * 0.004
    f = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=4.5 * sigma), 1.0)
    keep, st = f.keep, f.stats
    assert st.depth_rel_sigma == pytest.approx(sigma, rel=1e-4) and st.depth_limit == pytest.approx(4.5, rel=1e-4)
    assert np.array_equal(keep, base) and st.removed_uncertain == 0
    f = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=3 * sigma), 1.0)
    keep, st = f.keep, f.stats
    assert st.depth_limit == pytest.approx(3.0, rel=1e-4)
    assert np.array_equal(keep, base & ~far)
    assert st.removed_uncertain == (base & far).sum() and st.points_after == (base & ~far).sum()
    # the limit is in units of the scene scale: the same scene twice as large keeps the same points
    scaled = []
    for c2w, K, pm in cams:
        c2w = c2w.copy()
        c2w[:3, 3] *= 2
        scaled.append((c2w, K, pm * 2))
    f = support_filter(P * 2, np.ones(len(P)), scaled, FuseConfig(max_error=3 * sigma), 2.0)
    keep2, st2 = f.keep, f.stats
    assert np.array_equal(keep2, keep) and st2.depth_limit == pytest.approx(2 * st.depth_limit, rel=1e-4)
    for e, max_error in (([0.0, 0.0, 0.0, 0.05], 3 * sigma), (eps, 0.0)):
        P, cams, far = _two_plane_frames(e, centres)
        f = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=max_error), 1.0)
        keep, st = f.keep, f.stats
        assert np.array_equal(keep, base) and st.removed_uncertain == 0 and st.depth_limit is None


def test_consensus_moves_each_point_to_the_mean_of_its_supporting_surfaces_by_hand():
    """A plane z = 2 seen by four cameras (one turned 5°, the others moved), depths × 1, 1.006, 0.988
    about each centre and a fourth × 1.05 (it sees through, supports nothing). Frame j's surface is
    the plane scaled by 1 + e_j about c_j, so its vote is P + e_j (P − c_j) exactly, wherever P falls
    in its pixel: each of frame 0's central points moves to P + mean_j e_j (P − c_j) over the three;
    with the consensus off it stays put."""
    H, W = 48, 64
    K = np.array([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    eps = [0.0, 0.006, -0.012, 0.05]
    poses = [(np.eye(3), [0, 0, 0]), (np.eye(3), [0.1, 0, 0.2]),
             (Rotation.from_euler("y", 5, degrees=True).as_matrix(), [-0.1, 0.05, -0.3]), (np.eye(3), [0.05, 0, 0])]
    cams = []
    for e, (R, c) in zip(eps, poses):
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = R, c
        d = rays @ R.T
        X = c2w[:3, 3] + d * ((2.0 - c2w[2, 3]) / d[..., 2])[..., None]
        cams.append((c2w, K, c2w[:3, 3] + (1 + e) * (X - c2w[:3, 3])))
    P = cams[0][2][12:36, 16:48].reshape(-1, 3)  # frame 0's central pixels: every frame sees them
    normals = np.tile([0.0, 0.0, -1.0], (len(P), 1))
    fused = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=0.0), 1.0, normals)
    assert fused.keep.all()  # every point: support 3, one frame seeing through
    expected = P + sum(e * (P - c2w[:3, 3]) for e, (c2w, _, _) in zip(eps[:3], cams[:3])) / 3
    np.testing.assert_allclose(fused.xyz, expected, rtol=0, atol=1e-9)
    assert fused.stats.consensus_shift == pytest.approx(np.median(np.linalg.norm(expected - P, axis=1)), rel=1e-6)
    off = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=0.0, consensus=False), 1.0, normals)
    assert np.array_equal(off.keep, fused.keep) and np.array_equal(off.xyz, P) and off.stats.consensus_shift is None
    # a wrong normal (80° off) cannot move a point farther than the support band lets a vote
    tilted = np.tile([np.sin(np.radians(80)), 0.0, -np.cos(np.radians(80))], (len(P), 1))
    wild = support_filter(P, np.ones(len(P)), cams, FuseConfig(max_error=0.0), 1.0, tilted)
    reach = 0.015 * np.max([np.linalg.norm(P - c2w[:3, 3], axis=1) for c2w, _, _ in cams[:3]], axis=0)
    assert np.all(np.linalg.norm(wild.xyz - P, axis=1) <= reach + 1e-12)


def test_bearing_pnp_recovers_the_camera_under_a_smooth_depth_warp_where_the_rigid_fit_cannot():
    """A frame 2° off, its depth warped (drift, smooth warp, per-frame scale and shift, bumps): placed
    perfectly (each pixel's point on the true surface), the Sim(3) fit of its warped camera points is
    ~1° off; the camera from its pixels' bearings is exact, also with 10 % of the points misplaced."""
    from worldstereo.align.camera_refine import bearing_pnp, reprojection_px, rigid_c2w
    from worldstereo.geometry import unproject_depth

    data = make_inconsistent(SyntheticConfig(frames=3, width=96, height=72, rigid_rot_deg=2.0, scale_drift=0.1,
                                             warp_amp=0.03, frame_scale=0.05, depth_shift=0.03, bumps=3,
                                             bump_amp=0.06))
    _, frames = _frames(data, 3000)
    for k in (1, 2):
        f, T = frames[k], data.true_c2w[k]
        X = unproject_depth(data.true_depth[k], f.K, T)[f.pix[:, 1], f.pix[:, 0]]  # the perfect placement
        rigid = rigid_c2w(f.xyz, X)
        assert geodesic_deg(T[:3, :3], rigid[:3, :3]) > 0.5  # measured 0.97° and 1.02°
        c2w = bearing_pnp(X, f.pix, f.K, rigid)
        assert geodesic_deg(T[:3, :3], c2w[:3, :3]) < 1e-6
        assert np.linalg.norm(c2w[:3, 3] - T[:3, 3]) < 1e-9 * data.scale
        assert reprojection_px(X, f.pix, f.K, c2w).max() < 1e-6
        bad = np.random.default_rng(k).choice(len(X), len(X) // 10, replace=False)
        X_out = X.copy()
        X_out[bad] += np.random.default_rng(k + 10).normal(scale=0.2 * data.scale, size=(len(bad), 3))
        robust = bearing_pnp(X_out, f.pix, f.K, rigid)
        assert geodesic_deg(T[:3, :3], robust[:3, :3]) < 0.05
        assert np.linalg.norm(robust[:3, 3] - T[:3, 3]) < 0.002 * data.scale


def test_guarded_bearing_step_keeps_right_flow_and_drops_biased_flow():
    """corr.residual = guarded: the bearing iterations are kept when the matches are right and
    thrown away when a flow bias (here 3° about the camera) would drag the frame off the surfaces."""
    data = make_inconsistent(SyntheticConfig(frames=2, width=96, height=72, rigid_rot_deg=2.0, **EXACT))
    cfg, frames = _frames(data, 4000)
    assert cfg.icp.corr.residual == "guarded"  # the default
    model = VoxelModel(cfg.icp.voxel * data.scale)
    merge_frame(model, frames[0], FrameState(frames[0].c2w_given.copy(), None))
    exact = FrameState(data.true_c2w[1].copy(), None)
    x = frames[1].xyz[::4]
    Y = exact.world(x)
    rigid = DeformConfig(kind="none")
    kept = bearing_polish(frames[1], exact, model, Matches(x, Y, np.ones(len(x))), cfg.icp, rigid, data.scale)
    assert kept is not exact
    assert geodesic_deg(kept.A[:3, :3], data.true_c2w[1][:3, :3]) < 0.05
    assert np.linalg.norm(kept.A[:3, 3] - data.true_c2w[1][:3, 3]) < 1e-3 * data.scale
    R_bias = Rotation.from_rotvec([0.0, np.deg2rad(3.0), 0.0]).as_matrix()
    c = exact.A[:3, 3]
    biased = Matches(x, (Y - c) @ R_bias.T + c, np.ones(len(x)))
    assert bearing_polish(frames[1], exact, model, biased, cfg.icp, rigid, data.scale) is exact


def test_rejection_tests_in_order_and_nan_never_fails():
    from worldstereo.align.icp import ICPConfig, rejection_reason

    icp = ICPConfig()  # inliers < 0.2, agreement < 0.3, or worse than the given pose by > 1e-3 × scale
    assert rejection_reason(icp, 0.5, 0.9, 0.05, 0.01, 1.0) == ""
    assert rejection_reason(icp, 0.1, 0.1, 0.05, 0.09, 1.0) == "inliers"
    assert rejection_reason(icp, 0.5, 0.1, 0.05, 0.09, 1.0) == "matches"
    assert rejection_reason(icp, 0.5, 0.9, 0.0709, 0.0788, 2.94) == "worse"  # room7_clutter_sweep's frame 2
    assert rejection_reason(icp, 0.5, 0.9, 2e-8, 6e-6, 1.0) == ""  # exact input: the solver's own tolerance
    assert rejection_reason(icp, 0.5, float("nan"), float("nan"), 0.01, 1.0) == ""  # no matches, no pairs
    icp.reject_worse = False
    assert rejection_reason(icp, 0.5, 0.9, 0.0709, 0.0788, 2.94) == ""


def test_consistent_input_keeps_every_frame():
    data = make_inconsistent(SyntheticConfig(kind="room", path="orbit", frames=8, width=96, height=72, **EXACT))
    cfg, frames = _frames(data, 3000)
    res = sequential_align(frames, cfg.icp, cfg.deform, data.scale)
    assert res.rejected == [] and not any(r.retried_without_matches for r in res.per_frame)
    for k in range(1, 8):  # and the cameras stay exact
        assert geodesic_deg(data.true_c2w[k][:3, :3], refined_c2w(frames[k], res.states[k])[:3, :3]) < 0.05
