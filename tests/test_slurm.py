"""run_pipeline.py --images through a real Slurm (scripts/local_slurm.sh): same outputs as local,
a scancelled job is reported and resubmitted alone, bad input is reported with its one-line error,
no controller → one-line error and exit 2.

These start a single-node Slurm on this machine (root, Debian's slurm-wlm + munge); they are
marked `slurm` and `slow`. Without a Slurm they skip, or fail under CI=true."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, sigint_as_in_a_terminal, textured_box_scene

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "local_slurm.sh"
SMALL_JOB = ["--cpus-per-job", "1", "--mem-gb", "1", "--timeout-min", "10", "--poll-s", "0.5"]


@pytest.fixture(scope="session")
def local_slurm():
    """A running single-node Slurm; started here (and stopped at the end) unless one already runs."""
    if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0:
        yield
        return
    r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        reason = f"local Slurm did not start: {lines[-1] if lines else f'exit code {r.returncode}'}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield
    subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True)


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _pipeline(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--long-side", "96", "--frames", "6", *args]
    return subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=600)


def _image_list(folder: Path, names: list[str]) -> Path:
    """Tiny textured-box scenes (96×72 with depth and intrinsics) and the list file naming them."""
    lines = []
    for seed, name in enumerate(names):
        rgb, depth, K = textured_box_scene(seed=seed)
        cv2.imwrite(str(folder / f"{name}.png"), rgb[..., ::-1])
        np.save(folder / f"{name}_depth.npy", depth)
        lines.append(f"{name}.png depth={name}_depth.npy intrinsics={K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}")
    path = folder / "images.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_scenes_on_slurm_match_the_local_launcher(local_slurm, tmp_path):
    _image_list(tmp_path, ["a", "b"])
    local = _pipeline(tmp_path, "--images", "images.txt", "--scene", "local", "--launcher", "local",
                      "--log-dir", "logs_local")
    assert local.returncode == 0, local.stderr
    r = _pipeline(tmp_path, "--images", "images.txt", "--scene", "slurm", "--launcher", "slurm",
                  "--log-dir", "logs_slurm", *SMALL_JOB)
    assert r.returncode == 0, r.stderr
    assert re.search(r"submitted 2 job\(s\) as Slurm job array \d+", r.stderr)
    assert re.search(r"\[launch\] Slurm job array \d+: \d pending, \d running, \d done, 0 failed of 2", r.stderr)
    assert "[launch] 2 done, 0 failed, 0 already finished" in r.stderr
    for name in ("a", "b"):
        with np.load(tmp_path / "local" / name / "exports/npz/results.npz") as want, \
                np.load(tmp_path / "slurm" / name / "exports/npz/results.npz") as got:
            assert sorted(want.files) == sorted(got.files)
            for key in want.files:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")
        out_log = next((tmp_path / "logs_slurm" / name).glob("*_log.out"))  # link to the Slurm job's own log
        assert out_log.is_symlink() and "[export]" in out_log.read_text()


def _wait_for_job_start(log_folder: Path, timeout_s: float = 120) -> str:
    """The Slurm id of the job whose log in log_folder shows its Python started."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        for log in log_folder.glob("*_log.out") if log_folder.is_dir() else []:
            if log.exists() and "Loading pickle" in log.read_text():
                return log.name[: -len("_log.out")]
        time.sleep(0.1)
    raise AssertionError(f"no job started within {timeout_s}s in {log_folder}")


def test_scancelled_job_is_reported_and_rerun_alone(local_slurm, tmp_path):
    _image_list(tmp_path, ["a", "b"])
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--long-side", "96", "--frames", "6", "--images",
           "images.txt", "--scene", "scenes", "--launcher", "slurm", *SMALL_JOB]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_b = _wait_for_job_start(tmp_path / "logs/jobs/b")
    subprocess.run(["scancel", job_b], check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert re.search(rf"\[batch\] b +failed .*Slurm job {job_b} CANCELLED", out), out
    assert re.search(r"\[batch\] a +done", out), out
    assert "CANCELLED AT" in err  # the job log's last lines are shown
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "[launch] 1 job(s) to run, 1 already finished (slurm)" in again.stderr
    assert "submitted 1 job(s)" in again.stderr
    assert re.search(r"\[batch\] a +skipped", again.stdout) and re.search(r"\[batch\] b +done", again.stdout)
    assert (tmp_path / "scenes/b/exports/npz/results.npz").is_file()


def test_bad_input_scene_reported_with_its_one_line_error(local_slurm, tmp_path):
    (tmp_path / "broken.png").write_text("not an image")
    (tmp_path / "images.txt").write_text("broken.png\n")
    r = _pipeline(tmp_path, "--images", "images.txt", "--scene", "scenes", "--launcher", "slurm", *SMALL_JOB)
    assert r.returncode == 1, r.stderr
    line = f"error: {tmp_path / 'broken.png'}: not a readable image (png/jpg expected)"
    assert re.search(rf"\[batch\] broken +failed +[\d.]+s  {re.escape(line)}  \(logs: ", r.stdout), r.stdout
    err_log = next((tmp_path / "logs/jobs/broken").glob("*_log.err")).read_text()
    assert line in err_log.splitlines()  # the one line comes from the job's own log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_reachable_slurm_is_a_one_line_error(local_slurm, tmp_path):
    conf = Path(os.environ.get("WS_SLURM_DIR", "/var/tmp/worldstereo-slurm")) / "slurm.conf"
    dead = tmp_path / "slurm.conf"  # the same cluster, but its controller port has nobody listening
    dead.write_text(re.sub(r"(?m)^SlurmctldPort=\d+", f"SlurmctldPort={_free_port()}", conf.read_text()))
    _image_list(tmp_path, ["a"])
    r = _pipeline(tmp_path, "--images", "images.txt", "--scene", "scenes", "--launcher", "slurm",
                  env=_env(SLURM_CONF=str(dead)))
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:") or "Traceback" in ln]
    assert errors == ["error: --launcher slurm: no Slurm controller reachable "
                      "(Slurmctld(primary) at " + socket.gethostname().split(".")[0] + " is DOWN); use --launcher local"]
    assert not (tmp_path / "scenes").exists() and not (tmp_path / "logs").exists()


def test_ctrl_c_cancels_the_submitted_jobs(local_slurm, tmp_path):
    _image_list(tmp_path, ["a", "b"])
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--long-side", "96", "--frames", "6", "--images",
           "images.txt", "--scene", "scenes", "--launcher", "slurm", *SMALL_JOB]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_in_a_terminal)
    job_a = _wait_for_job_start(tmp_path / "logs/jobs/a")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    cancelled = re.search(r"\[launch\] interrupted: cancelled Slurm job\(s\) ([\d_ ]+) \(scancel\)", err)
    assert cancelled and job_a in cancelled.group(1).split(), err
    array = job_a.split("_")[0]
    for _ in range(50):  # scancel is asynchronous: wait for the controller to record it
        q = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", array],
                           capture_output=True, text=True).stdout
        states = dict(ln.split("|") for ln in q.split())
        if all(states.get(j) == "CANCELLED" for j in cancelled.group(1).split()):
            break
        time.sleep(0.2)
    assert all(states.get(j) == "CANCELLED" for j in cancelled.group(1).split()), states


def test_gpus_the_cluster_has_not_got_are_refused_in_one_line(local_slurm, tmp_path):
    _image_list(tmp_path, ["a"])  # the local Slurm has no GresTypes=gpu, so --gpus-per-node=1 cannot be met
    r = _pipeline(tmp_path, "--images", "images.txt", "--scene", "scenes", "--launcher", "slurm",
                  "--gpus-per-job", "1", *SMALL_JOB)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == ("error: --launcher slurm: sbatch refused the jobs: "
                                         "sbatch: error: Invalid generic resource (gres) specification")
    assert not (tmp_path / "scenes").exists() and not (tmp_path / "logs").exists()
