"""Resume you can trust: relative paths, forced reruns, staleness, the writer lock, file modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, textured_box_scene
from worldstereo.io.results import RESULTS_KEYS

K = textured_box_scene()[2]
INTR = [str(K[0, 0]), str(K[1, 1]), str(K[0, 2]), str(K[1, 2])]
TINY = ["--intrinsics", *INTR, "--long-side", "96", "--frames", "4"]
SKIP_COMPARE = ("scene.json", ".worldstereo.lock")


def cli(script: str, *args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def popen(script: str, *args, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files_of(root: Path) -> dict[str, bytes]:
    """Every file's bytes below `root` except the manifest and the lock note (they carry run ids)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in SKIP_COMPARE}


def assert_same_files(a: Path, b: Path) -> None:
    fa, fb = files_of(a), files_of(b)
    assert sorted(fa) == sorted(fb), set(fa) ^ set(fb)
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"files differ: {differ}"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with photo.png + photo_depth.npy and one fresh reference run (scenes/ref)."""
    import cv2

    d = tmp_path_factory.mktemp("resume")
    rgb, depth, _ = textured_box_scene()
    cv2.imwrite(str(d / "photo.png"), rgb[..., ::-1])
    np.save(d / "photo_depth.npy", depth)
    r = cli("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", *TINY, "--scene", "scenes/ref", cwd=d)
    assert r.returncode == 0, r.stderr
    return d


def fresh_copy(work: Path, name: str) -> Path:
    dst = work / "scenes" / name
    shutil.copytree(work / "scenes" / "ref", dst)
    return dst


def test_relative_scene_is_up_to_date_from_any_cwd_and_path_form(work):
    r = cli("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", *TINY, "--scene", "scenes/ref", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("up to date") == 11 and "done in" not in r.stdout
    # another working directory, another path form, no input flags at all: the saved config resumes
    sub = work / "elsewhere"
    sub.mkdir(exist_ok=True)
    for form in ("../scenes/ref", str(work / "scenes" / "ref"), "../scenes/./ref/"):
        r = cli("run_pipeline.py", "--scene", form, cwd=sub)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("up to date") == 11, (form, r.stdout)
    records = json.loads((work / "scenes" / "ref" / "scene.json").read_text())["stages"]
    for rec in records.values():
        assert all(not Path(o).is_absolute() and not o.startswith("scenes") for o in rec["outputs"]), rec["outputs"]
    r = cli("generate_video.py", "--scene", "../scenes/ref", "--trajectory", "up", cwd=sub)
    assert r.returncode == 0 and "[generate/up] up to date" in r.stdout, r.stderr


def test_force_prepare_redoes_everything_after_it(work):
    scene = fresh_copy(work, "force_prepare")
    r = cli("run_pipeline.py", "--scene", scene, "--force", "prepare", cwd=work)
    assert r.returncode == 0, r.stderr
    for stage in ("prepare", "plan", "generate/orbit", "update_cache/left", "export"):
        assert f"[{stage}] done" in r.stdout, (stage, r.stdout)
    assert "up to date" not in r.stdout
    assert_same_files(scene, work / "scenes" / "ref")


def test_force_generate_reproduces_a_fresh_run_bit_for_bit(work):
    scene = fresh_copy(work, "force_generate")
    r = cli("run_pipeline.py", "--scene", scene, "--force", "generate", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("done in") == 9  # 4 × (generate, update_cache) + export; prepare and plan current
    ref = np.load(work / "scenes" / "ref" / "exports" / "npz" / "results.npz")
    new = np.load(scene / "exports" / "npz" / "results.npz")
    for k in RESULTS_KEYS:
        assert np.array_equal(ref[k], new[k]), k
    assert_same_files(scene, work / "scenes" / "ref")


def test_rerun_of_one_trajectory_makes_the_rest_stale_and_consumers_refuse(work):
    scene = fresh_copy(work, "stale")
    r = cli("generate_video.py", "--scene", scene, "--trajectory", "up", "--force", cwd=work)
    assert r.returncode == 0, r.stderr
    stale_lines = [ln for ln in r.stdout.splitlines() if "now stale" in ln]
    assert len(stale_lines) == 1 and "update_cache/up" in stale_lines[0] and "(6 in all)" in stale_lines[0]
    assert "run_pipeline.py --scene" in stale_lines[0]
    # the later trajectory's record is kept but stale; its stage says so instead of "has not run"
    r = cli("update_cache.py", "--scene", scene, "--trajectory", "right", cwd=work)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "generate/right is stale" in r.stderr and "Traceback" not in r.stderr
    # consumers of the stale results.npz refuse it and name the command that refreshes it
    for script, args in [("reconstruct.py", ["--scene", scene]), ("train_gs.py", ["--scene", scene]),
                         ("-m utils.export", ["transforms", "--scene", scene])]:
        cmd = script.split() if script.startswith("-m") else [script]
        if script.startswith("-m"):
            p = subprocess.run([sys.executable, *cmd, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                               timeout=300)
        else:
            p = cli(script, *args, cwd=work)
        assert p.returncode == 2, (script, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "stale" in lines[0] and f"run_pipeline.py --scene {scene}" in lines[0], lines
    assert not (scene / "align").exists() and not (scene / "gs_3dgs").exists()
    r = cli("run_pipeline.py", "--scene", scene, cwd=work)
    assert r.returncode == 0, r.stderr
    assert "[generate/orbit] up to date" in r.stdout and "[generate/up] up to date" in r.stdout
    assert "[update_cache/up] done" in r.stdout and "[export] done" in r.stdout
    assert_same_files(scene, work / "scenes" / "ref")


def test_single_stage_scripts_refuse_input_flags(work):
    r = cli("generate_video.py", "--scene", "scenes/ref", "--trajectory", "up", "--frames", "9", "--image", "x.png",
            cwd=work)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--image" in r.stderr and "--frames" in r.stderr and "run_pipeline.py" in r.stderr


def test_second_writer_is_refused_while_the_first_proceeds(work):
    scene = work / "scenes" / "locked"
    first = popen("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", *TINY, "--scene", scene,
                  cwd=work)
    for line in first.stdout:
        if "[plan] done" in line:
            first.send_signal(signal.SIGSTOP)  # hold it mid-run, lock held, however fast this machine is
            break
    second = cli("run_pipeline.py", "--scene", scene, cwd=work)
    first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "in use" in lines[0], lines
    assert_same_files(scene, work / "scenes" / "ref")


def test_lock_of_a_killed_writer_is_taken_over(work):
    scene = work / "scenes" / "killed"
    p = popen("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", *TINY, "--scene", scene, cwd=work)
    for line in p.stdout:
        if "[generate/orbit] done" in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert str(p.pid) in (scene / ".worldstereo.lock").read_text()
    r = cli("run_pipeline.py", "--scene", scene, cwd=work)
    assert r.returncode == 0, r.stderr
    assert_same_files(scene, work / "scenes" / "ref")


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(work, umask):
    scene = work / "scenes" / f"umask{umask:o}"
    r = cli("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", *TINY, "--scene", scene,
            "--until", "generate", cwd=work, preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    paths = [scene, *scene.rglob("*")]
    assert len(paths) > 20
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert mode == want, (str(p), oct(mode), oct(want))


def test_full_disk_leaves_nothing_a_rerun_would_trust(work):
    import resource

    scene = work / "scenes" / "fsize"

    def small_files():  # every write past 64 kB fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    r = cli("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", *TINY, "--scene", scene,
            cwd=work, preexec_fn=small_files)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {scene}/") and "too large" in lines[0], lines
    assert not list(scene.rglob(".tmp-*"))
    r = cli("run_pipeline.py", "--scene", scene, cwd=work)
    assert r.returncode == 0, r.stderr
    assert_same_files(scene, work / "scenes" / "ref")


def test_reconstruct_input_video_skips_when_its_files_are_unchanged(work, tmp_path):
    from worldstereo.io.video import write_video

    npz = work / "scenes" / "ref" / "exports" / "npz" / "results.npz"
    with np.load(npz) as z:
        write_video(tmp_path / "gen.mp4", list(z["image"]), fps=8)
    args = ["--input-video", tmp_path / "gen.mp4", "--depth-npz", npz, "--scene", tmp_path / "imp",
            "--preprocess.frames", "3", "--icp.max-iters", "2"]
    r = cli("reconstruct.py", *args, cwd=work)
    assert r.returncode == 0, r.stderr
    mtime = (tmp_path / "imp" / "align" / "canonical.ply").stat().st_mtime_ns
    r = cli("reconstruct.py", *args, cwd=work)
    assert r.returncode == 0, r.stderr
    assert "[import] up to date" in r.stdout and "[reconstruct] up to date" in r.stdout
    assert (tmp_path / "imp" / "align" / "canonical.ply").stat().st_mtime_ns == mtime


def test_intrinsics_accepts_the_comma_form(work):
    scene = work / "scenes" / "comma"
    r = cli("run_pipeline.py", "--image", "photo.png", "--depth", "photo_depth.npy", "--intrinsics", ",".join(INTR),
            "--long-side", "96", "--frames", "4", "--scene", scene, "--until", "prepare", cwd=work)
    assert r.returncode == 0, r.stderr
    ref = json.loads((work / "scenes" / "ref" / "scene.json").read_text())["K"]
    assert np.allclose(json.loads((scene / "scene.json").read_text())["K"], ref)


def test_any_forced_sequence_ends_as_a_fresh_run(work, tmp_path, torch_one_thread):
    """Property: random sequences of stage commands with --force (and a config change on the way)
    followed by the final run end in the same files as one fresh run with the final config."""

    from configs.pipeline import GenerationConfig, InputConfig, PlanConfig
    from worldstereo.cameras import PlannerConfig
    from worldstereo.pipeline.config import STAGES
    from worldstereo.pipeline.driver import open_scene, run_pipeline
    from worldstereo.pipeline.stages import stage_export, stage_generate, stage_update_cache

    def cfg(frames: int) -> GenerationConfig:
        return GenerationConfig(input=InputConfig(image=work / "photo.png", depth=work / "photo_depth.npy",
                                                  intrinsics=tuple(map(float, INTR)), long_side=96),
                                plan=PlanConfig(planner=PlannerConfig(frames=frames)))

    final = cfg(4)
    names = ["orbit", "up", "right", "left"]
    commands = [
        lambda s, c, rng: run_pipeline(s, c, force=(str(rng.choice(STAGES)),)),
        lambda s, c, rng: run_pipeline(s, c, until=str(rng.choice(STAGES)), force=(str(rng.choice(STAGES)),)),
        lambda s, c, rng: stage_generate(s, c, str(rng.choice(names)), force=True),
        lambda s, c, rng: stage_update_cache(s, c, str(rng.choice(names)), force=True),
        lambda s, c, rng: stage_export(s, c, force=True),
        lambda s, c, rng: run_pipeline(s, cfg(3)),  # a config change on the way
    ]
    rng = np.random.default_rng(7)
    for trial in range(3):
        scene = open_scene(tmp_path / f"seq{trial}", create=True)
        run_pipeline(scene, final)
        for k in rng.choice(len(commands), size=3):
            try:
                commands[k](scene, final, rng)
            except Exception as e:  # a stage whose inputs are stale refuses, in one InputError
                from worldstereo.errors import InputError

                assert isinstance(e, InputError) and "stale" in str(e), e
        run_pipeline(scene, final)
        assert_same_files(scene.root, work / "scenes" / "ref")


def test_viewer_rejects_a_port_out_of_range(work):
    r = subprocess.run([sys.executable, "-m", "utils.view", "--scene", str(work / "scenes" / "ref"), "--port", "99999"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: --port must be from 0 to 65535, got 99999", r.stderr


def test_export_on_a_read_only_scene_is_one_line(work):
    """Read-only for the user running it: as root (who may write anywhere) the command runs as nobody."""
    import tempfile

    as_nobody = os.geteuid() == 0
    if as_nobody and shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing: cannot make a folder read-only")
    base = Path(tempfile.mkdtemp(prefix="ws-ro-"))  # outside pytest's 0700 tree, so nobody can reach it
    scene = base / "scene"
    try:
        shutil.copytree(work / "scenes" / "ref", scene)
        for p in (base, *scene.rglob("*")):
            p.chmod(0o555 if p.is_dir() else 0o444)
        scene.chmod(0o555)
        before = {str(p): p.stat().st_mtime_ns for p in scene.rglob("*")}
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
        r = subprocess.run([*prefix, sys.executable, "-m", "utils.export", "transforms", "--scene", str(scene)],
                           cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        assert r.returncode == 2, r.stderr
        assert r.stderr.splitlines() == [f"error: {scene}: scene folder is not writable ({scene})"], r.stderr
        assert {str(p): p.stat().st_mtime_ns for p in scene.rglob("*")} == before
    finally:
        for p in (base, scene, *scene.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(base)


def test_odd_frame_size_video_is_written_and_readable(tmp_path):
    """train_gs's fly-through at an odd working size: H.264 needs even sizes, so frames are cropped."""
    from worldstereo.io.video import read_video, write_video

    frames = [np.full((25, 33, 3), 40 * k, np.uint8) for k in range(5)]
    write_video(tmp_path / "odd.mp4", frames, fps=8)
    back = read_video(tmp_path / "odd.mp4")
    assert len(back) == 5 and back[0].shape == (24, 32, 3)
    assert abs(int(back[3].mean()) - 120) <= 3
