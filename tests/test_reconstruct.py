"""reconstruct.py end to end on a tiny video_to_world-style folder; input errors; warp()."""

import json

import numpy as np
import pytest
import torch

import reconstruct
from worldstereo.align.inverse import load_inverse_deformations
from worldstereo.bench.builders import SyntheticConfig, make_inconsistent
from worldstereo.bench.writers import write_results_folder
from worldstereo.io.ply import read_ply
from worldstereo.io.results import load_results

SMALL = ["--preprocess.points-per-frame", "2000", "--preprocess.stride", "2", "--preprocess.offset", "1",
         "--icp.max-iters", "8", "--no-tensorboard"]


@pytest.fixture(scope="module")
def v2w_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2w")
    write_results_folder(root, make_inconsistent(SyntheticConfig(frames=7, width=64, height=48)))
    return root


def test_results_npz_only_folder_is_accepted(v2w_scene):
    reconstruct.entrypoint(["--scene", str(v2w_scene), *SMALL])
    align = v2w_scene / "align"
    for name in ("canonical.ply", "deformations.npz", "config.json", "convention.json", "metrics.json"):
        assert (align / name).exists(), name
    metrics = json.loads((align / "metrics.json").read_text())
    assert metrics["frames"] == [1, 3, 5]  # offset and stride honoured
    assert metrics["p2plane_median_after"] < metrics["p2plane_median_before"]
    assert len(read_ply(align / "canonical.ply")) > 1000
    assert json.loads((v2w_scene / "scene.json").read_text())["stages"]["reconstruct"]["finished"]


def test_rerun_is_skipped_and_reads_back_typed_metrics(tmp_path, v2w_scene):
    import shutil

    from worldstereo.align.deform import DeformConfig
    from worldstereo.align.global_opt import GlobalOptConfig
    from worldstereo.align.icp import ICPConfig
    from worldstereo.align.inverse import InverseConfig
    from worldstereo.align.pipeline import run_reconstruct
    from worldstereo.align.preprocess import PreprocessConfig

    shutil.copytree(v2w_scene / "exports", tmp_path / "exports")
    cfgs = (PreprocessConfig(frames=3, points_per_frame=2000), ICPConfig(max_iters=4), DeformConfig(),
            GlobalOptConfig(), InverseConfig())
    first = run_reconstruct(tmp_path, *cfgs, tensorboard=False)
    again = run_reconstruct(tmp_path, *cfgs, tensorboard=False)
    assert not first.skipped and again.skipped
    m = again.metrics
    assert m.frames == [0, 2, 4] and [r.frame for r in m.per_frame] == [2, 4] and m.global_opt is None
    assert m.points == len(read_ply(tmp_path / "align" / "canonical.ply"))
    assert m.inverse_round_trip.p95_max == first.metrics.inverse_round_trip.p95_max
    on_disk = json.loads((tmp_path / "align" / "metrics.json").read_text())
    assert set(on_disk) == {"frames", "scene_scale", "points", "p2plane_median_before", "p2plane_median_after",
                            "global_opt", "inverse_round_trip", "per_frame", "seconds", "rejected_frames", "fuse",
                            "drift", "bundle"}
    assert set(on_disk["per_frame"][0]) == {"frame", "p2plane_before", "p2plane_after", "inlier_frac", "matches",
                                            "seconds", "iters", "pairs", "inlier_frac_final", "match_agree", "rejected",
                                            "reject_reason", "truncated_before", "truncated_after",
                                            "retried_without_matches"}
    assert m.rejected_frames == on_disk["rejected_frames"] and m.fuse.points_after == m.points
    assert not m.drift.applied and m.drift.reason == "2 accepted frames (< 10)"  # too few to fit
    assert m.bundle.applied and m.bundle.pairs >= 2 and m.bundle == first.metrics.bundle  # read back typed
    assert m.inverse_round_trip.p95_max == on_disk["inverse_round_trip"]["p95_max"]


def test_warp_places_canonical_points_in_frame_world(v2w_scene):
    if not (v2w_scene / "align" / "deformations.npz").exists():
        reconstruct.entrypoint(["--scene", str(v2w_scene), *SMALL])
    warp = load_inverse_deformations(v2w_scene)
    assert warp.frame_indices == [1, 3, 5]
    z = np.load(v2w_scene / "align" / "deformations.npz")
    k = 2
    # a canonical point made from camera point x of frame 5 must warp back to c2w_given · x
    x = np.array([[0.1, -0.2, 3.0], [0.5, 0.3, 4.0]])
    from worldstereo.align.deform import ControlGrid

    g = ControlGrid(z["grid_lo"][k], z["grid_hi"][k], z["grid_values"][k])
    A = z["c2w_aligned"][k]
    X = (x + g.displace(x)) @ A[:3, :3].T + A[:3, 3]
    means = torch.tensor(X, requires_grad=True)
    out = warp(5, means)
    expect = x @ z["c2w_given"][k][:3, :3].T + z["c2w_given"][k][:3, 3]
    assert np.allclose(out.detach().numpy(), expect, atol=1e-3 * warp.scale)
    out.sum().backward()
    assert means.grad is not None and torch.isfinite(means.grad).all()
    with pytest.raises(KeyError):
        warp(2, means)


@pytest.mark.parametrize("mutate, key", [
    (lambda a: a.pop("conf"), "conf"),
    (lambda a: a.__setitem__("extrinsics", a["extrinsics"][:, :2]), "extrinsics"),
    (lambda a: a.__setitem__("depth", a["depth"].astype(np.float64)), "depth"),
])
def test_bad_results_npz_is_one_line_error(tmp_path, v2w_scene, capsys, mutate, key):
    with np.load(v2w_scene / "exports" / "npz" / "results.npz") as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    bad = tmp_path / "exports" / "npz" / "results.npz"
    bad.parent.mkdir(parents=True)
    np.savez(bad, **arrays)
    with pytest.raises(SystemExit) as e:
        reconstruct.entrypoint(["--scene", str(tmp_path), *SMALL])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{key}'" in err[0]


def test_input_video_with_depth_npz(tmp_path, v2w_scene):
    from worldstereo.io.video import write_video

    r = load_results(v2w_scene / "exports" / "npz" / "results.npz")
    write_video(tmp_path / "gen.mp4", list(r.image), fps=8)
    scene = tmp_path / "imported"
    reconstruct.entrypoint(["--input-video", str(tmp_path / "gen.mp4"), "--depth-npz",
                            str(v2w_scene / "exports" / "npz" / "results.npz"), "--scene", str(scene), *SMALL])
    assert len(load_results(scene / "exports" / "npz" / "results.npz")) == len(r)
    assert (scene / "align" / "canonical.ply").exists()


def test_presets_parse():
    from configs.reconstruct import parse

    for args in (["--scene", "x", "--preset", "extensive", "--icp.max-iters", "3"],
                 ["extensive", "--scene", "x", "--icp.max-iters", "3"]):
        cfg = parse(args)
        assert cfg.global_opt.enabled and cfg.icp.max_iters == 3 and str(cfg.scene) == "x"
    fast = parse(["--scene", "x"])
    assert not fast.global_opt.enabled and fast.icp.max_iters != 3
    cfg = parse(["extensive", "--scene", "x", "--icp.corr.frames", "5", "--deform.hash.iters", "7"])
    # nested sub-configs: a flag overrides one field, the preset keeps the others
    assert cfg.icp.corr.frames == 5 and cfg.icp.corr.points == 8000 and cfg.deform.hash.iters == 7


def test_extensive_with_hashgrid_smoke(tmp_path, v2w_scene):
    import shutil

    shutil.copytree(v2w_scene / "exports", tmp_path / "exports")
    reconstruct.entrypoint(["--scene", str(tmp_path), "--preset", "extensive", "--deform.kind", "hashgrid",
                            "--deform.hash.iters", "5", "--global-opt.sweeps", "1", "--global-opt.iters", "3", *SMALL])
    m = json.loads((tmp_path / "align" / "metrics.json").read_text())
    assert m["global_opt"]["p2plane_after"] is not None
    assert not (tmp_path / "align" / "hash_fields.pt").exists()  # nothing read it: the inverse grids carry the field
    assert m["inverse_round_trip"]["p95_max"] < 0.01
