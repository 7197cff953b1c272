"""The WorldStereo backends wired into the pipeline (CPU, tiny random weights written in the release's
layout here): run_pipeline.py with --generator worldstereo-memory-dmd, stereo depth + Sim(3) in
update_cache, the official task export, --import-video, and the official kitchen example as custom
trajectories."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("diffusers", reason="the worldstereo backend needs the `diffusion` extra")

from conftest import REPO, plan_box_scene, textured_box_scene  # noqa: E402
from test_worldstereo_model import (INNER, base_layout, no_network, random_checkpoint,  # noqa: E402
                                    release_branch_layout, release_config, tiny_base, tiny_image_encoder,
                                    tiny_text_encoder, write_variant)

from configs.pipeline import RunPipeline  # noqa: E402
from worldstereo.cameras import PlannerConfig, load_trajectory, to_worldstereo_camera_json  # noqa: E402
from worldstereo.errors import InputError  # noqa: E402
from worldstereo.io.images import read_image  # noqa: E402
from worldstereo.io.results import load_results  # noqa: E402
from worldstereo.io.video import read_video, write_video  # noqa: E402
from worldstereo.pipeline.cli import parse_with_saved_config  # noqa: E402
from worldstereo.pipeline.config import GenerationConfig, validate, with_backend_defaults  # noqa: E402
from worldstereo.pipeline.driver import open_scene, run_pipeline  # noqa: E402
from worldstereo.scene import SceneDir  # noqa: E402

KITCHEN = Path("/work/shared/data/worldstereo_kitchen")
VARIANT = "worldstereo-memory-dmd"
__all__ = ["no_network", "tiny_base"]  # fixtures shared with the model tests


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    yield


@pytest.fixture(scope="module")
def tiny_release(tiny_base, tmp_path_factory) -> tuple[Path, Path]:
    """(weights root, base folder): a memory-dmd checkpoint in the release's key layout over a tiny base
    that also holds a tiny UMT5 + tokenizer and CLIP + processor, all saved as diffusers / transformers folders."""
    tokenizer, text_encoder = tiny_text_encoder()
    processor, image_encoder = tiny_image_encoder()
    tokenizer.save_pretrained(tiny_base / "tokenizer")
    text_encoder.save_pretrained(tiny_base / "text_encoder")
    processor.save_pretrained(tiny_base / "image_processor")
    image_encoder.save_pretrained(tiny_base / "image_encoder")
    layout = base_layout() | release_branch_layout(release_config(VARIANT)["controlnet_cfg"], INNER, 36, VARIANT)
    root = tmp_path_factory.mktemp("weights")
    write_variant(root, VARIANT, random_checkpoint(layout), cfg=release_config(VARIANT) | {"scale_map": [[32, 48]]})
    return root, tiny_base


def _inputs(folder: Path) -> list[str]:
    rgb, depth, K = textured_box_scene()
    cv2.imwrite(str(folder / "photo.png"), rgb[..., ::-1])
    np.save(folder / "photo_depth.npy", depth)
    return ["--image", str(folder / "photo.png"), "--depth", str(folder / "photo_depth.npy"), "--intrinsics",
            *(str(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])), "--long-side", "48"]


def _model_args(weights: Path, base: Path) -> list[str]:
    return ["--generator", VARIANT, "--weights", str(weights), "--base-model", str(base),
            "--prompt", "a sunlit kitchen", "--device", "cpu"]


@pytest.fixture(scope="module")
def dmd_scene(tiny_release, tmp_path_factory):
    """A tiny scene run through run_pipeline's CLI parsing with the memory-dmd backend, sockets refused."""
    import socket

    weights, base = tiny_release
    tmp = tmp_path_factory.mktemp("dmd")
    argv = [*_inputs(tmp), *_model_args(weights, base), "--order", "up", "right", "--scene", str(tmp / "scene")]
    args = parse_with_saved_config(RunPipeline, argv, require_scene=False)
    saved = socket.socket.connect, socket.create_connection

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    socket.socket.connect, socket.create_connection = refuse, refuse
    try:
        run_pipeline(open_scene(args.scene, create=True), args.gen)
    finally:
        socket.socket.connect, socket.create_connection = saved
    return SceneDir(tmp / "scene"), tmp


def test_socket_guard_refuses_connections(no_network):
    import socket

    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))


def test_memory_dmd_pipeline_makes_21_frames_per_trajectory(dmd_scene):
    scene, _ = dmd_scene
    m = scene.load()
    assert m.trajectory_order == ["up", "right"] and m.config["plan"]["planner"]["frames"] == 21
    for name in ("up", "right"):
        g = m.stages[f"generate/{name}"]
        assert g.info["backend"] == VARIANT
        assert g.seconds < 60, f"tiny memory-dmd trajectory took {g.seconds} s"
        assert len(load_trajectory(scene.trajectory(name))) == 21
        assert len(list(scene.frames(name).glob("*.png"))) == 21
        assert not (scene.frames(name) / "depth.npy").exists()  # pixels only: depth comes from update_cache
        assert len(read_video(scene.video(name))) == 21
        u = m.stages[f"update_cache/{name}"].info["alignment"]
        assert u["depth_source"] == "mvs" and len(u["frames"]) == 21
        assert all(0 <= j < 21 for j in u["rejected_frames"])
        d = np.load(scene.frame_depth(name) / "depth.npy")
        assert d.shape == (21, 36, 48) and d.dtype == np.float32
    # the second trajectory is conditioned on memory the first one left in the bank
    assert m.stages["generate/right"].info["refs_used"]
    res = load_results(scene.results_npz)
    assert len(res) == 1 + 2 * 21
    assert np.array_equal(res.depth[1:22], np.load(scene.frame_depth("up") / "depth.npy"))


def test_rejected_frames_are_not_merged_and_accepted_ones_are(dmd_scene):
    scene, _ = dmd_scene
    m = scene.load()
    for name in ("up", "right"):
        a = m.stages[f"update_cache/{name}"].info["alignment"]
        d = np.load(scene.frame_depth(name) / "depth.npy")
        for j in a["rejected_frames"]:
            rec = a["frames"][j]
            valid = d[j][d[j] > 0]
            assert (len(valid) < 200 or rec["inlier_ratio"] < 0.5
                    or rec["rmse_after"] > 0.05 * float(np.median(valid)))


def test_task_export_layout_reads_back(dmd_scene, tmp_path):
    scene, _ = dmd_scene
    out = tmp_path / "task"
    r = subprocess.run([sys.executable, "-m", "utils.export", "worldstereo-task", "--scene", str(scene.root),
                        "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "prompt.json").read_text()) == {"prompt": "a sunlit kitchen"}
    image = read_image(out / "image.png")
    assert image.shape == (36, 48, 3) and np.array_equal(image, read_image(scene.input_image))
    for name in ("up", "right"):
        folder = out / "renders" / f"traj_{name}"
        planned, back = load_trajectory(scene.trajectory(name)), load_trajectory(folder / "camera.json")
        assert (back.width, back.height) == (48, 36)
        assert np.abs(back.c2w() - planned.c2w()).max() < 1e-6 and np.abs(back.K() - planned.K()).max() < 1e-6
        raw = json.loads((folder / "camera.json").read_text())
        assert np.allclose(np.asarray(raw["intrinsic"])[:, 0, 2], planned.K()[:, 0, 2] + 0.5)  # release centres
        render, mask = read_video(folder / "render.mp4"), read_video(folder / "render_mask.mp4")
        assert len(render) == len(mask) == 21 and render[0].shape == (36, 48, 3)
        # mask white = hole: frame 0 is the input view (few holes), later frames of the arc see more
        white = [float((f.mean(-1) > 127).mean()) for f in mask]
        assert white[0] < 0.1 and max(white) > white[0]
    again = subprocess.run([sys.executable, "-m", "utils.export", "worldstereo-task", "--scene", str(scene.root),
                            "--out", str(scene.root)], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.strip().startswith(f"error: {scene.root}: exists and is not")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".worldstereo.lock"}


def _generate_video(scene: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "generate_video.py"), "--scene", str(scene), *args],
                          cwd=REPO, capture_output=True, text=True)


def test_import_video_bad_count_or_size_is_refused_untouched(dmd_scene, tmp_path):
    scene, _ = dmd_scene
    rng = np.random.default_rng(0)
    short = tmp_path / "short.mp4"
    write_video(short, (rng.random((20, 36, 48, 3)) * 255).astype(np.uint8))
    wide = tmp_path / "wide.mp4"
    write_video(wide, (rng.random((21, 36, 64, 3)) * 255).astype(np.uint8))
    before = _digest(scene.root)
    r = _generate_video(scene.root, "--trajectory", "up", "--import-video", str(short))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {short}: video has 20 frames, the trajectory has 21 cameras: need at least 21")
    r = _generate_video(scene.root, "--trajectory", "up", "--import-video", str(wide))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {wide}: video is 64x36, the trajectory's frames are 48x36: the aspect ratio differs")
    assert _digest(scene.root) == before


def test_import_video_resamples_records_and_gets_stereo_depth(dmd_scene, tmp_path):
    import shutil

    src, _ = dmd_scene
    root = tmp_path / "scene"
    shutil.copytree(src.root, root)
    scene = SceneDir(root)
    # 81 frames at twice the size, as the release writes a clip: frame k of the 21 keyframes is frame 4k
    frames = np.stack([cv2.resize(read_image(SceneDir.frame_png(scene.frames("up"), min(i // 4, 20))), (96, 72),
                                  interpolation=cv2.INTER_NEAREST) for i in range(81)])
    video = tmp_path / "up_result.mp4"
    write_video(video, frames, 16)
    r = _generate_video(root, "--trajectory", "up", "--import-video", str(video))
    assert r.returncode == 0, r.stderr
    assert "resampled 81 → 21 frames (frames 0, 4, … 80); resized 96x72 → 48x36" in r.stdout
    g = scene.load().stages["generate/up"]
    assert g.info["backend"] == "imported" and g.info["imported_from"] == str(video)
    assert len(list(scene.frames("up").glob("*.png"))) == 21
    assert not scene.status("update_cache/up").current  # the new frames make the cache update stale
    r = subprocess.run([sys.executable, str(REPO / "update_cache.py"), "--scene", str(root), "--trajectory", "up"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a = scene.load().stages["update_cache/up"].info["alignment"]
    assert a["depth_source"] == "mvs" and len(a["frames"]) == 21
    # a pipeline rerun keeps the imported frames (only --force generate replaces them)
    args = parse_with_saved_config(RunPipeline, ["--scene", str(root)])
    run_pipeline(open_scene(root, create=False), args.gen, until="generate")
    assert scene.load().stages["generate/up"].info["backend"] == "imported"


# --------------------------------------------------------------------------- config checks


def _one_line(e: InputError) -> str:
    text = str(e)
    assert "\n" not in text
    return text


def test_diffusion_backend_plans_21_frames_and_refuses_other_counts_and_orbit(tiny_release):
    weights, base = tiny_release
    gen = parse_with_saved_config(RunPipeline, [*_model_args(weights, base)], require_scene=False).gen
    cfg = with_backend_defaults(gen)
    assert cfg.plan.planner.frames == 21 and cfg.plan.order == ("up", "right", "left")
    validate(cfg)
    bad = dataclasses.replace(cfg, plan=dataclasses.replace(cfg.plan, planner=PlannerConfig(frames=17)))
    with pytest.raises(InputError) as e:  # a config from Python, checked by validate
        validate(with_backend_defaults(bad))
    assert _one_line(e.value) == ("--frames 17: worldstereo-memory-dmd makes 21 frames per trajectory "
                                  "(leave --frames out or give 21)")
    for frames in ("17", "25"):  # from the command line, 25 included (the geometric default given explicitly)
        with pytest.raises(InputError) as e:
            parse_with_saved_config(RunPipeline, [*_model_args(weights, base), "--frames", frames], require_scene=False)
        assert _one_line(e.value) == (f"--frames {frames}: worldstereo-memory-dmd makes 21 frames per trajectory "
                                      "(leave --frames out or give 21)")
    assert parse_with_saved_config(RunPipeline, [*_model_args(weights, base), "--frames=21"],
                                   require_scene=False).gen.plan.planner.frames == 21
    bad = parse_with_saved_config(RunPipeline, [*_model_args(weights, base), "--order", "orbit", "up"],
                                  require_scene=False).gen
    with pytest.raises(InputError) as e:
        validate(with_backend_defaults(bad))
    assert _one_line(e.value).startswith("--order: 'orbit' does not start at the input camera")
    geometric = with_backend_defaults(GenerationConfig())
    assert geometric.plan.planner.frames == 25 and geometric.plan.order == ("orbit", "up", "right", "left")


def test_missing_folders_and_full_size_without_cuda_are_one_line_errors_before_any_write(tiny_release, tmp_path):
    weights, base = tiny_release
    inputs = _inputs(tmp_path)
    cases = {
        tmp_path / "nowhere": ["--generator", VARIANT, "--weights", str(tmp_path / "nowhere"), "--base-model", str(base)],
        tmp_path / "nobase": ["--generator", VARIANT, "--weights", str(weights), "--base-model", str(tmp_path / "nobase")],
    }
    expect = {tmp_path / "nowhere": "weights folder not found",
              tmp_path / "nobase": "base model folder not found (Wan2.1-I2V-14B-480P-Diffusers, local copy)"}
    for path, flags in cases.items():
        r = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), *inputs, *flags, "--scene",
                            str(tmp_path / "s")], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.strip() == f"error: {path}: {expect[path]}"
        assert not (tmp_path / "s").exists()
    # a full-size base (40 heads × 128 = 5120 wide) on a machine without CUDA
    big = tmp_path / "big"
    for part in ("vae", "text_encoder", "image_encoder", "tokenizer", "image_processor", "transformer"):
        (big / part).mkdir(parents=True)
    for part in ("vae", "text_encoder", "image_encoder"):
        (big / part / "config.json").write_text("{}")
    (big / "transformer" / "config.json").write_text(json.dumps(
        {"in_channels": 36, "image_dim": 1280, "num_attention_heads": 40, "attention_head_dim": 128}))
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA message cannot be shown")
    r = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), *inputs, "--generator", VARIANT, "--weights",
                        str(weights), "--base-model", str(big), "--scene", str(tmp_path / "s")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: no CUDA device: WorldStereo 2.0 (14B) needs a GPU (--offload for 48 GB cards); "
        "without one, use --generator geometric")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- the official kitchen example


@pytest.mark.skipif(not KITCHEN.is_dir(), reason="the official kitchen example is not on this machine")
def test_kitchen_camera_json_uses_pixel_centres_at_half_and_round_trips():
    traj = load_trajectory(KITCHEN / "renders" / "traj_up" / "camera.json")
    raw = json.loads((KITCHEN / "renders" / "traj_up" / "camera.json").read_text())
    # the release's principal point is W/2, H/2: the image centre with pixel centres at +0.5,
    # which is (W − 1)/2, (H − 1)/2 with ours at integers
    assert np.allclose(traj.K()[:, 0, 2], (768 - 1) / 2) and np.allclose(traj.K()[:, 1, 2], (512 - 1) / 2)
    back = to_worldstereo_camera_json(traj)
    assert np.abs(np.asarray(back["intrinsic"]) - np.asarray(raw["intrinsic"])).max() < 1e-9
    # the release's rotations are float32-rounded, so w2c → c2w → w2c moves them by ~5e-8
    assert np.abs(np.asarray(back["extrinsic"]) - np.asarray(raw["extrinsic"])).max() < 1e-6


@pytest.mark.skipif(not KITCHEN.is_dir(), reason="the official kitchen example is not on this machine")
def test_kitchen_trajectories_as_custom_ones_are_named_after_their_folder(tmp_path):
    from worldstereo.cameras import scale_intrinsics

    files = [KITCHEN / "renders" / f"traj_{n}" / "camera.json" for n in ("up", "left")]
    argv = ["--image", str(KITCHEN / "image.png"), "--long-side", "64", "--order", "--custom", *map(str, files),
            "--scene", str(tmp_path / "scene"), "--until", "plan"]
    r = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), *argv], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    scene = SceneDir(tmp_path / "scene")
    assert scene.load().trajectory_order == ["traj_up", "traj_left"]
    W, H = scene.load().working_size
    assert (W, H) == (64, 43)
    for n, f in zip(("up", "left"), files):
        raw = json.loads(f.read_text())
        w2c = np.asarray(raw["extrinsic"])
        planned = load_trajectory(scene.trajectory(f"traj_{n}"))
        assert len(planned) == 21 and (planned.width, planned.height) == (W, H)
        # re-expressed relative to frame 0 (the release's input view): c2w'_i = w2c_0 · c2w_i
        expect = np.einsum("ij,njk->nik", w2c[0], np.linalg.inv(w2c))
        assert np.abs(planned.c2w() - expect).max() < 1e-6 and np.allclose(planned.c2w()[0], np.eye(4))
        K_ours = np.asarray(raw["intrinsic"][0], float) - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
        assert np.allclose(planned.K()[0], scale_intrinsics(K_ours, W / 768, H / 512))


# --------------------------------------------------------------------------- stereo depth of pixel-only frames


@pytest.fixture(scope="module")
def planned_box(tmp_path_factory):
    """A 96×72 box scene planned with one 21-frame `up` trajectory (geometric config)."""
    tmp = tmp_path_factory.mktemp("box")
    return tmp, plan_box_scene(tmp)


def _import_and_update(planned_box, frames: np.ndarray, name: str) -> tuple[SceneDir, dict]:
    import shutil

    from worldstereo.pipeline.stages import stage_import_video, stage_update_cache

    tmp, cfg = planned_box
    shutil.copytree(tmp / "scene", tmp / name)
    scene = SceneDir(tmp / name)
    write_video(tmp / f"{name}.mp4", frames, 12)
    stage_import_video(scene, cfg, "up", tmp / f"{name}.mp4")
    stage_update_cache(scene, cfg, "up")
    return scene, scene.load().stages["update_cache/up"].info["alignment"]


def test_frames_consistent_with_the_cache_get_metric_stereo_depth_aligned_and_merged(planned_box):
    from worldstereo.memory.cache import PointCache

    tmp, _ = planned_box
    scene = SceneDir(tmp / "scene")
    traj = load_trajectory(scene.trajectory("up"))
    cache = PointCache.load(scene.cache_step(0))
    frames = np.stack([cache.render(c, 2.0).rgb for c in traj.cameras])  # what a perfect generator would show
    scene, a = _import_and_update(planned_box, frames, "consistent")
    assert a["depth_source"] == "mvs" and a["rejected_frames"] == []
    aligned = [f for f in a["frames"] if np.isfinite(f["rmse_after"])]
    assert len(aligned) == 21
    # stereo along the planned cameras is already in the scene's scale; Umeyama removes the rest
    assert all(abs(f["scale"] - 1) < 0.05 for f in aligned)
    assert np.median([f["rmse_after"] / f["rmse_before"] for f in aligned]) < 0.6
    assert a["points_after"] > a["points_before"]


def test_noise_frames_are_rejected_and_leave_the_cache_as_it_was(planned_box):
    rng = np.random.default_rng(0)
    frames = (rng.random((21, 72, 96, 3)) * 255).astype(np.uint8)
    _, a = _import_and_update(planned_box, frames, "noise")
    assert len(a["rejected_frames"]) == 21
    assert a["points_after"] == a["points_before"]


def test_precomputed_prompt_embeddings_replace_the_text_encoder(dmd_scene, tiny_release, tmp_path):
    import shutil

    import torch
    from safetensors.torch import save_file

    from worldstereo.generate.worldstereo.sampling import encode_prompt

    weights, base = tiny_release
    no_text = tmp_path / "base"
    shutil.copytree(base, no_text, ignore=shutil.ignore_patterns("text_encoder", "tokenizer"))
    tokenizer, encoder = tiny_text_encoder()
    embeds = tmp_path / "prompt.safetensors"
    save_file({"prompt_embeds": encode_prompt(tokenizer, encoder, "a sunlit kitchen", torch.device("cpu"))}, str(embeds))
    save_file({"other": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    argv = [*_inputs(tmp_path), "--generator", VARIANT, "--weights", str(weights), "--base-model", str(no_text),
            "--device", "cpu", "--order", "up", "--scene", str(tmp_path / "scene")]
    with pytest.raises(InputError) as e:  # without embeddings the missing text encoder is named
        validate(with_backend_defaults(parse_with_saved_config(RunPipeline, argv, require_scene=False).gen))
    assert _one_line(e.value) == f"{no_text / 'text_encoder' / 'config.json'}: missing from the base model folder"
    with pytest.raises(InputError) as e:
        validate(with_backend_defaults(parse_with_saved_config(
            RunPipeline, [*argv, "--prompt-embeds", str(tmp_path / "bad.safetensors")], require_scene=False).gen))
    assert _one_line(e.value) == (f"{tmp_path / 'bad.safetensors'}: needs a tensor 'prompt_embeds' of shape "
                                  "[1, tokens, width]")
    args = parse_with_saved_config(RunPipeline, [*argv, "--prompt-embeds", str(embeds)], require_scene=False)
    run_pipeline(open_scene(args.scene, create=True), args.gen, until="generate")
    ref, _ = dmd_scene
    got = SceneDir(tmp_path / "scene")
    for j in (0, 10, 20):  # the same scene and seed: embeddings of the same prompt give the same frames
        assert np.array_equal(read_image(SceneDir.frame_png(got.frames("up"), j)),
                              read_image(SceneDir.frame_png(ref.frames("up"), j)))
