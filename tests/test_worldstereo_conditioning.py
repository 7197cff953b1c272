"""WorldStereo 2.0 conditioning tensors against hand computations (torch only, no diffusers)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from worldstereo.generate.worldstereo import conditioning as C


def w2c_from(R_w2c: np.ndarray, centre: np.ndarray) -> torch.Tensor:
    m = np.eye(4)
    m[:3, :3] = R_w2c
    m[:3, 3] = -R_w2c @ centre
    return torch.tensor(m, dtype=torch.float32)


def centres(w2c: torch.Tensor) -> np.ndarray:
    return torch.linalg.inv(w2c.double())[:, :3, 3].numpy()


def test_keyframes_81_to_21_and_uneven_counts():
    assert C.keyframe_indices(81).tolist() == list(range(0, 81, 4))
    # floor(i * 49 / 20): 2.45 per step
    assert C.keyframe_indices(50).tolist() == [0, 2, 4, 7, 9, 12, 14, 17, 19, 22, 24, 26, 29, 31, 34, 36, 39, 41,
                                               44, 46, 49]
    assert C.keyframe_indices(15).tolist() == list(range(15))


@pytest.mark.parametrize("hw, bucket", [((480, 640), (512, 720)), ((1080, 1920), (480, 768)),
                                        ((1920, 1080), (768, 480)), ((500, 500), (608, 608)),
                                        ((600, 700), (576, 640))])
def test_resolution_bucket_by_aspect_ratio(hw, bucket):
    # ratios h/w of the buckets: .625 .711 .9 1 1.111 1.406 1.6; 600/700 = .857 is nearest .9
    assert C.resolution_bucket(*hw) == bucket


def test_rescale_intrinsics_rows():
    K = torch.tensor([[[100.0, 0, 50], [0, 90, 40], [0, 0, 1]]])
    out = C.rescale_intrinsics(K, (100, 80), (200, 40))
    assert torch.allclose(out[0], torch.tensor([[200.0, 0, 100], [0, 45, 20], [0, 0, 1]]))


def test_normalisation_recentres_and_rescales_a_line_of_cameras():
    w2c = torch.stack([w2c_from(np.eye(3), np.array([x, 0.0, 0.0])) for x in (0.0, 4.0, 8.0)])
    out = C.normalize_cameras(w2c)
    # centre offset = mean (4, 0, 0); first camera then at -4, scale 2 / 4
    assert np.allclose(centres(out), [[-2, 0, 0], [0, 0, 0], [2, 0, 0]], atol=1e-6)
    assert torch.allclose(out[:, :3, :3], torch.eye(3).expand(3, 3, 3))


def test_normalisation_makes_first_camera_identity_rotation():
    R0 = Rotation.from_euler("xyz", [10, 70, -20], degrees=True).as_matrix()
    R1 = Rotation.from_euler("xyz", [-30, 5, 40], degrees=True).as_matrix()
    c0, c1 = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 4.0])
    out = C.normalize_cameras(torch.stack([w2c_from(R0, c0), w2c_from(R1, c1)]))
    assert torch.allclose(out[0, :3, :3], torch.eye(3), atol=1e-6)
    assert np.allclose(out[1, :3, :3].numpy(), R1 @ R0.T, atol=1e-6)
    # relative centre R0 (c1 - c0); two cameras: centred at ± half of it, scaled so |c0| = 2
    u = R0 @ (c1 - c0)
    u = u / np.linalg.norm(u)
    assert np.allclose(centres(out), [-2 * u, 2 * u], atol=1e-5)


def test_normalisation_leaves_far_outlier_out_of_the_centre():
    xs = [i * 0.1 for i in range(40)] + [1000.0]
    out = C.normalize_cameras(torch.stack([w2c_from(np.eye(3), np.array([x, 0.0, 0.0])) for x in xs]))
    # median 2.0; 97th percentile of distances 1.98 → cut at 19.8 drops the outlier; inlier mean 1.95
    s = 2 / 1.95
    assert np.allclose(centres(out)[:, 0], [(x - 1.95) * s for x in xs], rtol=1e-5, atol=1e-5)


def test_normalisation_with_references_uses_target_centre_and_scale():
    tgt = torch.stack([w2c_from(np.eye(3), np.array([x, 0.0, 0.0])) for x in (0.0, 8.0)])
    ref = w2c_from(np.eye(3), np.array([0.0, 0.0, 10.0]))[None]
    t_out, r_out = C.normalize_cameras_with_references(tgt, ref)
    assert np.allclose(centres(t_out), [[-2, 0, 0], [2, 0, 0]], atol=1e-6)
    assert np.allclose(centres(r_out), [[-2, 0, 5]], atol=1e-6)  # (0 - 4) * .5, 10 * .5


def test_quaternions_known_and_against_scipy():
    rz90 = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert torch.allclose(C.rotation_to_quaternion(rz90), torch.tensor([math.sqrt(0.5), 0, 0, math.sqrt(0.5)]))
    rx180 = torch.diag(torch.tensor([1.0, -1, -1]))
    assert torch.allclose(C.rotation_to_quaternion(rx180), torch.tensor([0.0, 1, 0, 0]))
    mats = Rotation.random(50, random_state=3).as_matrix()
    ours = C.rotation_to_quaternion(torch.tensor(mats)).numpy()
    xyzw = Rotation.from_matrix(mats).as_quat()
    ref = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], 1)
    ref *= np.where(ref[:, :1] < 0, -1, 1)
    assert np.allclose(ours, ref, atol=1e-6)


def test_pose_vectors_are_quaternion_then_translation():
    w2c = w2c_from(np.eye(3), np.array([1.0, 2.0, 3.0]))[None]
    assert torch.allclose(C.camera_pose_vectors(w2c), torch.tensor([[1.0, 0, 0, 0, -1, -2, -3]]))


def test_plucker_rays_of_known_cameras():
    K = torch.tensor([[2.0, 0, 1], [0, 2, 1], [0, 0, 1]])
    w2c = torch.stack([w2c_from(np.eye(3), np.zeros(3)), w2c_from(np.eye(3), np.array([1.0, 0, 0]))])
    emb = C.plucker_rays(K.expand(2, 3, 3), w2c, 2, 3)
    assert emb.shape == (6, 2, 2, 3)
    # row 1, col 2 → pixel (2 - .5, 1 + .5) → camera ray ((1.5 - 1) / 2, (1.5 - 1) / 2, 1)
    d = np.array([0.25, 0.25, 1.0]) / np.linalg.norm([0.25, 0.25, 1.0])
    assert np.allclose(emb[:3, 0, 1, 2].numpy(), d, atol=1e-6)
    assert np.allclose(emb[3:, 0, 1, 2].numpy(), 0, atol=1e-7)  # origin at 0: no moment
    assert np.allclose(emb[3:, 1, 1, 2].numpy(), np.cross([1.0, 0, 0], d), atol=1e-6)
    # a camera turned 90° about y: its +z looks along world +x
    R_c2w = Rotation.from_euler("y", 90, degrees=True).as_matrix()
    rot = C.plucker_rays(K[None], w2c_from(R_c2w.T, np.zeros(3))[None], 2, 3)
    assert np.allclose(rot[:3, 0, 1, 2].numpy(), R_c2w @ d, atol=1e-6)


def test_hole_mask_resize_is_nearest_then_threshold():
    m = torch.tensor([[[1, 0, 0, 1], [0, 1, 1, 0]]], dtype=torch.bool)
    up = C.resize_hole_mask(m, 4, 8)
    assert torch.equal(up[0], m[0].float().repeat_interleave(2, 0).repeat_interleave(2, 1))
    grey = torch.tensor([[[0.2, 0.6, 0.9, 0.4], [1, 1, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0.7]]])
    down = C.resize_hole_mask(grey, 2, 2)  # nearest keeps source rows/cols 0 and 2
    assert torch.equal(down[0], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_mask_coverage_per_latent_cell():
    m = torch.zeros(1, 16, 24)
    m[0, :4, :8] = 1  # half of cell (0, 0)
    m[0, 8:, 16:] = 1  # all of cell (1, 2)
    assert torch.equal(C.mask_latent_coverage(m)[0], torch.tensor([[0.5, 0, 0], [0, 0, 1.0]]))
    with pytest.raises(ValueError, match="multiple of the latent stride"):
        C.mask_latent_coverage(torch.zeros(1, 12, 16))


def test_reference_layout_first_appearance_order():
    layout = C.reference_layout([7, 7, 3, 7, 3, 9])  # target frames 1..6
    assert layout.bank_ids == [7, 3, 9]
    assert layout.ref_index == [0, 2, 5]
    gaps = C.reference_layout([None, 4, None, 4, 2])  # frames 1 and 3 have no reference
    assert (gaps.bank_ids, gaps.ref_index) == ([4, 2], [1, 4])


def test_reference_cap_keeps_the_most_retrieved():
    # counts 5:2, 2:2, 7:3, 9:1 → keep 7, then 5 (retrieved before 2)
    assert C.cap_references([5, 5, 2, None, 7, 7, 7, 2, 9], 2) == [5, 5, None, None, 7, 7, 7, None, None]
    assert C.cap_references([1, 2, 1], 8) == [1, 2, 1]


def test_stitched_positions_put_references_right_of_their_frame():
    target, refs = C.stitched_token_positions([0, 2], frames=4, rows=2, cols=3)
    assert target.shape == (4, 2, 3, 3) and refs.shape == (2, 2, 3, 3)
    assert target[2, 1, 0].tolist() == [2, 1, 0]
    assert refs[0, 1, 2].tolist() == [1, 1, 5]  # ref 0 beside frame 0 + 1, column 3 + 2
    assert refs[1, 0, 0].tolist() == [3, 0, 3]


def test_importing_the_backend_does_not_import_diffusers():
    code = ("import sys, worldstereo, worldstereo.generate, worldstereo.generate.worldstereo, "
            "worldstereo.generate.worldstereo.conditioning, worldstereo.generate.worldstereo.config, "
            "worldstereo.generate.worldstereo.sampling, worldstereo.generate.worldstereo.generator; "
            "assert 'diffusers' not in sys.modules, 'diffusers imported'")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, env=env)
    assert res.returncode == 0, res.stderr
