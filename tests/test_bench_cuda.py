"""benchmarks/bench_cuda.py at toy size on the CPU: the GPU check script runs end to end and says what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the worldstereo backend needs the `diffusion` extra")
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_fills_every_figure_and_cpu_agrees_with_itself(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmarks.bench_cuda", "--smoke", "--device", "cpu", "--only",
                        "tiny,full", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())
    tiny, full = res["tiny"], res["full"]
    assert "error" not in tiny and "error" not in full, (tiny.get("error"), full.get("error"))
    # the same float32 arithmetic on the same device: nothing may differ
    assert tiny["dtype"] == "torch.float32" and tiny["latents_rel_err_fp32"] == 0.0
    assert tiny["frames_shape"] == [21, 32, 32, 3] and tiny["frames_fp32_max_abs_diff_uint8"] == 0
    assert tiny["offload_vs_resident_rel_err"] == 0.0 and tiny["offload_models_back_on_cpu"]
    assert tiny["report"].startswith("loaded 152 tensors, 0 from the base model, 0 unexpected")
    for mode in ("resident", "offload"):
        assert full[mode]["frames"] == [21, 64, 96, 3] and full[mode]["frames_varied"]
        assert full[mode]["transformer_outputs_finite"]
        assert len(full[mode]["transformer_calls_s"]) == 4  # memory-dmd: four flow steps
    assert res["software"]["diffusers"] and res["software"]["torch"]
