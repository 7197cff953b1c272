"""The same reconstruct command twice gives bit-identical outputs, whatever Python's hash salt and
torch's per-process default seed are (every random draw comes from a seeded generator)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from worldstereo.bench.builders import SyntheticConfig, make_inconsistent
from worldstereo.bench.writers import write_results_folder as write_scene
from worldstereo.io.ply import read_ply

REPO = Path(__file__).resolve().parents[1]
# extensive + hashgrid: the ICP pair subsets, the hash field's initialisation and its Adam loop, and
# the global optimisation's anchors all draw random numbers
ARGS = ["--preprocess.frames", "4", "--preprocess.stride", "1", "--preprocess.points-per-frame", "2000",
        "--preset", "extensive", "--icp.max-iters", "8", "--deform.kind", "hashgrid",
        "--deform.hash.iters", "5", "--global-opt.sweeps", "1", "--global-opt.iters", "3", "--no-tensorboard"]


def _start(scene: Path, hash_seed: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "reconstruct.py", "--scene", str(scene), *ARGS], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_give_identical_canonical_ply(tmp_path):
    data = make_inconsistent(SyntheticConfig(frames=4, width=64, height=48))
    scenes = [tmp_path / "a", tmp_path / "b"]
    for s in scenes:
        write_scene(s, data)
    runs = [_start(scenes[0], "1"), _start(scenes[1], "2")]
    for p in runs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
    ply = [(s / "align" / "canonical.ply").read_bytes() for s in scenes]
    assert len(read_ply(scenes[0] / "align" / "canonical.ply")) > 1000
    assert ply[0] == ply[1]
    cams = [(s / "align" / "cameras_refined.json").read_bytes() for s in scenes]  # bundle-adjusted: RANSAC draws
    assert cams[0] == cams[1]
    za, zb = (np.load(s / "align" / "deformations.npz") for s in scenes)
    assert za.files == zb.files
    for k in za.files:
        np.testing.assert_array_equal(za[k], zb[k], err_msg=k)
