"""Depth from a local Hugging Face model, built offline here (a tiny random DPT), and the depth-source
bookkeeping of the CLI: model, not-a-model folder, and the planar-prior fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from worldstereo.depth.model import predict_depth  # noqa: E402
from worldstereo.errors import InputError  # noqa: E402
from worldstereo.io.images import read_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
H, W = 48, 64
OFFLINE = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_pipeline.py", *map(str, args)], cwd=REPO, env=OFFLINE,
                          capture_output=True, text=True, timeout=300)


def make_image() -> np.ndarray:
    v, u = np.mgrid[0:H, 0:W]
    return np.stack([u * 4, v * 5, (u + v) * 2], -1).clip(0, 255).astype(np.uint8)


def build_tiny_dpt(out: Path, rgb: np.ndarray) -> None:
    """A 70k-parameter random DPT + its image processor, saved with save_pretrained. The last conv
    is rescaled so the output on `rgb` is positive and varied (about 3 ± 0.5) despite the final ReLU."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    cfg = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                    reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=16)
    model = DPTForDepthEstimation(cfg).eval()
    proc = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    inputs = proc(images=rgb, return_tensors="pt")
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
        last = model.head.head[-2]  # Conv2d(…, 1, 1×1) before the final ReLU
        last.bias.zero_()
        seen = {}
        hook = last.register_forward_hook(lambda m, i, o: seen.setdefault("pre", o))
        model(**inputs)
        hook.remove()
        s = 0.5 / seen["pre"].std()
        last.weight.mul_(s)
        last.bias.fill_(3.0 - float(s * seen["pre"].mean()))
        assert float(model(**inputs).predicted_depth.min()) > 0.5
    model.save_pretrained(out)
    proc.save_pretrained(out)


def raw_prediction(model_dir: Path, rgb: np.ndarray) -> np.ndarray:
    """The model's output bilinearly resized to the image, computed here independently."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    proc = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.no_grad():
        pred = model(**proc(images=rgb, return_tensors="pt")).predicted_depth
    return torch.nn.functional.interpolate(pred[:, None], size=rgb.shape[:2], mode="bilinear",
                                           align_corners=False)[0, 0].double().numpy()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Inputs, the tiny model, and the three CLI runs started in the background (they import torch and
    transformers, so they run while the in-process tests do)."""
    base = tmp_path_factory.mktemp("depth_model")
    rgb = make_image()
    image = base / "photo.png"
    cv2.imwrite(str(image), rgb[..., ::-1])
    not_model = base / "not_a_model"
    not_model.mkdir()
    (not_model / "notes.txt").write_text("holiday notes, not weights\n")
    common = ["--image", image, "--fov-deg", "60", "--long-side", "64"]
    ex = ThreadPoolExecutor(max_workers=3)
    runs = {
        "prior": ex.submit(run, *common, "--until", "prepare", "--scene", base / "scene_prior"),
        "not_model": ex.submit(run, *common, "--depth-model", not_model, "--scene", base / "scene_bad"),
    }
    model_dir = base / "tiny_dpt"
    build_tiny_dpt(model_dir, rgb)
    runs["model"] = ex.submit(run, *common, "--depth-model", model_dir, "--order", "orbit", "--frames", "2",
                              "--scene", base / "scene_model")
    yield SimpleNamespace(base=base, rgb=rgb, model_dir=model_dir, not_model=not_model, runs=runs,
                          raw=raw_prediction(model_dir, rgb))
    ex.shutdown(wait=True)


# --------------------------------------------------------------------------- predict_depth in process


def test_disparity_mode_shape_positive_median(env):
    d = predict_depth(env.model_dir, env.rgb, "disparity", 2.5)
    assert d.shape == env.rgb.shape[:2] and d.dtype == np.float32
    assert np.isfinite(d).all() and (d > 0).all()
    assert float(np.median(d)) == pytest.approx(2.5, rel=1e-4)
    assert d.std() > 0.01  # the model's output is used, not a constant
    # depth falls as the model's disparity rises
    order = np.argsort(env.raw.ravel(), kind="stable")
    assert (np.diff(d.ravel()[order].astype(np.float64)) <= 1e-5 * d.max()).all()
    assert np.argmin(d) == np.argmax(env.raw)


def test_metric_mode_is_the_raw_interpolated_output(env):
    d = predict_depth(env.model_dir, env.rgb, "metric", 2.5)
    assert d.shape == env.rgb.shape[:2] and np.isfinite(d).all() and (d > 0).all()
    np.testing.assert_allclose(d, env.raw, rtol=1e-5, atol=1e-6)
    assert float(np.median(d)) != pytest.approx(2.5, rel=1e-3)  # metric is not rescaled


def test_depth_mode_is_proportional_to_output(env):
    d = predict_depth(env.model_dir, env.rgb, "depth", 2.5)
    assert float(np.median(d)) == pytest.approx(2.5, rel=1e-4)
    ratio = d / (env.raw + 1e-6)
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-4)


def test_missing_and_broken_model_folders(env, tmp_path):
    with pytest.raises(InputError, match="not found"):
        predict_depth(tmp_path / "nope", env.rgb, "disparity", 2.5)
    broken = tmp_path / "truncated_download"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (broken / name).write_bytes((env.model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes((env.model_dir / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(InputError, match="not a loadable depth model") as e:
        predict_depth(broken, env.rgb, "disparity", 2.5)
    assert e.value.path == str(broken) and "\n" not in e.value.one_line()


@pytest.mark.parametrize("output", ["disparity", "metric"])
def test_video_frames_get_the_same_depth_as_the_input_view(env, tmp_path, output):
    """reconstruct.py's outside-video path and run_pipeline.py's input view use one wrapper: the same
    model gives the same depth for the same frame."""
    from worldstereo.align.preprocess import PreprocessConfig, import_video
    from worldstereo.cameras import Camera, Trajectory, intrinsics_from_fov, save_trajectory
    from worldstereo.io.video import read_video, write_video

    frames = [env.rgb, np.roll(env.rgb, 9, axis=1), env.rgb[::-1].copy()]
    write_video(tmp_path / "gen.mp4", frames, fps=8)
    K = intrinsics_from_fov(W, H, 60.0)
    c2w = [np.eye(4) for _ in frames]
    for k, T in enumerate(c2w):
        T[0, 3] = 0.1 * k
    save_trajectory(Trajectory([Camera(K, T, W, H) for T in c2w]), tmp_path / "cams.json")
    cfg = PreprocessConfig(depth_source="model", depth_model_dir=env.model_dir, depth_model_output=output,
                           depth_model_median_m=2.5)
    r = import_video(tmp_path / "gen.mp4", tmp_path / "results.npz", cfg, None, tmp_path / "cams.json")
    decoded = read_video(tmp_path / "gen.mp4")
    assert r.depth.shape == (3, H, W)
    for k in range(3):
        np.testing.assert_array_equal(r.depth[k], predict_depth(env.model_dir, decoded[k], output, 2.5))
    if output == "disparity":
        assert np.median(r.depth, axis=(1, 2)) == pytest.approx([2.5] * 3, rel=1e-4)
    else:
        np.testing.assert_allclose(r.depth[0], raw_prediction(env.model_dir, decoded[0]), rtol=1e-5)


# --------------------------------------------------------------------------- the CLI


def test_cli_end_to_end_with_depth_model(env):
    p = env.runs["model"].result()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    scene = env.base / "scene_model"
    meta = json.loads((scene / "scene.json").read_text())
    src = meta["depth_source"]
    assert src["kind"] == "model" and src["path"] == str(env.model_dir) and src["fallback"] is False
    assert "depth: model" in p.stdout and "FALLBACK" not in p.stdout
    assert (scene / "exports" / "npz" / "results.npz").exists() and (scene / "videos" / "orbit.mp4").exists()
    depth = np.load(scene / "input" / "depth.npy")
    expected = predict_depth(env.model_dir, read_image(scene / "input" / "image.png"), "disparity", 2.5)
    # 1/disparity amplifies float32 differences between processes (thread counts) near zero disparity
    np.testing.assert_allclose(depth, expected, rtol=1e-3)
    assert float(np.median(depth)) == pytest.approx(2.5, rel=1e-4)


def test_cli_folder_that_is_not_a_model(env):
    p = env.runs["not_model"].result()
    assert "Traceback" not in p.stdout + p.stderr
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"error: {env.not_model}: not a loadable depth model"), lines[0]
    assert sorted(x.name for x in env.not_model.iterdir()) == ["notes.txt"]


def test_cli_without_depth_uses_planar_prior_and_says_so(env):
    p = env.runs["prior"].result()
    assert p.returncode == 0, p.stdout + p.stderr
    warnings = [line for line in p.stderr.splitlines() if line.startswith("WARNING:")]
    assert any("PLANAR PRIOR" in w for w in warnings), p.stderr
    assert "FALLBACK" in p.stdout
    meta = json.loads((env.base / "scene_prior" / "scene.json").read_text())
    src = meta["depth_source"]
    assert src["kind"] == "prior" and src["fallback"] is True and src["path"] is None
    depth = np.load(env.base / "scene_prior" / "input" / "depth.npy")
    assert depth.shape == (H, W) and np.isfinite(depth).all() and (depth > 0).mean() > 0.9
