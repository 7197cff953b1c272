"""Panoramic distance from a depth model run on perspective views (worldstereo/panorama/depth.py):
view scales aligned on the overlaps and fused; through run_pipeline.py --panorama --depth-model with
a tiny random DPT in the real checkpoint layout (tests/test_depth_model.build_tiny_dpt)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worldstereo.io.images import write_image
from worldstereo.panorama import make_bank, write_pano_bank
from worldstereo.panorama.bank import BankLayout
from worldstereo.panorama.depth import depth_cameras, distance_from_model, fuse_view_distances, view_distance
from worldstereo.panorama.synthetic_room import Room, render_panorama, render_view

REPO = Path(__file__).resolve().parents[1]
LAYOUT = BankLayout(width=104, height=60)  # the release's 832 × 480 / 8


def test_exact_views_with_wrong_scales_are_aligned_and_fused():
    """Exact z-depth of the room in every depth view, each multiplied by its own factor (what a relative
    model does): alignment recovers the factors' ratios and the fused map is the room's distance."""
    H = 64
    _, dist = render_panorama(Room(), H)
    cams = depth_cameras(LAYOUT)
    assert len(cams) == 29
    factors = np.random.default_rng(0).uniform(0.5, 2.0, len(cams))
    views = [view_distance(render_view(Room(), c)[1], c) * f for c, f in zip(cams, factors)]
    fused = fuse_view_distances(views, cams, H)
    assert fused.distance_m.shape == (H, 2 * H)
    # the scales undo the factors up to one common factor
    ratio = fused.scales * factors
    np.testing.assert_allclose(ratio / np.exp(np.mean(np.log(ratio))), 1.0, rtol=0.01)
    assert fused.offset_before > 0.1 and fused.offset_after < 0.005 and fused.spread_after < 0.01
    # every direction seen (the pole views close the caps), and the map is the room's distance
    # up to that common factor (off depth edges, where views' nearest pixels may differ)
    seen = fused.distance_m > 0
    assert seen.all()
    k = np.median(dist / fused.distance_m)
    rel = np.abs(k * fused.distance_m - dist) / dist
    assert np.median(rel) < 0.005 and np.percentile(rel, 95) < 0.03


def test_metric_median_is_set_when_asked():
    H = 32
    cams = depth_cameras(LAYOUT)
    views = [np.full((c.height, c.width), 3.0) for c in cams]
    fused = fuse_view_distances(views, cams, H, median_depth_m=2.0)
    np.testing.assert_allclose(np.median(fused.distance_m), 2.0, rtol=1e-6)
    kept = fuse_view_distances(views, cams, H)  # no median: the views' own scale
    np.testing.assert_allclose(kept.distance_m, 3.0, rtol=1e-6)


def test_distance_from_model_cuts_views_and_calls_the_model_per_view():
    H = 32
    rgb, _ = render_panorama(Room(), H)
    cams = depth_cameras(LAYOUT)
    seen = []

    def predict(view: np.ndarray) -> np.ndarray:
        seen.append(view.shape)
        return np.full(view.shape[:2], 2.0)

    fused = distance_from_model(rgb, predict, cams, median_depth_m=None)
    assert seen == [(c.height, c.width, 3) for c in cams]
    # z = 2 everywhere in each view: the distance is 2 / cos(angle off the axis), never below 2
    assert fused.distance_m.shape == (H, 2 * H) and fused.distance_m.min() >= 2.0 - 1e-4


# --------------------------------------------------------------------------- through the pipeline


@pytest.mark.slow
def test_run_pipeline_panorama_with_tiny_depth_model(tmp_path):
    pytest.importorskip("transformers")
    from test_depth_model import build_tiny_dpt

    rgb, _ = render_panorama(Room(), 64)
    write_image(tmp_path / "room.png", rgb)
    model = tmp_path / "tiny_dpt"
    build_tiny_dpt(model, rgb[16:64, 32:96])
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--panorama", "room.png", "--depth-model",
                        str(model), "--pano-width", "128", "--pano-view-scale", "0.125", "--until", "prepare",
                        "--scene", "scene"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "scene" / "scene.json").read_text())
    src = m["depth_source"]
    assert src["kind"] == "model" and not src["fallback"] and src["path"] == str(model)
    assert "29 views" in src["note"] and "aligned" in src["note"]
    assert "depth: model" in r.stdout and "SPHERICAL PRIOR" not in r.stderr
    dist = np.load(tmp_path / "scene" / "input" / "depth.npy")
    assert dist.shape == (64, 128) and (dist > 0).all() and np.isfinite(dist).all()
    np.testing.assert_allclose(np.median(dist), 2.5, rtol=1e-5)  # relative model: --median-depth-m
    # the views agree better after alignment than before (figures recorded in scene.json's note)
    found = re.search(r"\(median \|log ratio\|\) ([0-9.]+) before, ([0-9.]+) after", src["note"])
    assert found and float(found.group(2)) < float(found.group(1))
    # the release's pano_bank as input: the model runs on its own 27 views (no pole views: caps unknown)
    write_pano_bank(tmp_path / "pano_bank", make_bank(rgb, None, LAYOUT))
    r = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--pano-bank", "pano_bank", "--depth-model",
                        str(model), "--pano-width", "128", "--until", "prepare", "--scene", "scene_bank"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    src = json.loads((tmp_path / "scene_bank" / "scene.json").read_text())["depth_source"]
    assert src["kind"] == "model" and "27 views (the pano_bank's)" in src["note"]
    dist = np.load(tmp_path / "scene_bank" / "input" / "depth.npy")
    assert dist.shape == (64, 128) and 0.75 < (dist > 0).mean() < 0.85  # the caps past ±71.6° (20 % of rows)
    assert (dist[:, :] > 0)[20:44].all()  # around the horizon every pixel is seen
