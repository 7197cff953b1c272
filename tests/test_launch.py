"""The local launcher runs jobs in parallel processes; a failure is reported, the others finish."""

import os
import sys
import time

import cloudpickle
import pytest

pytest.importorskip("submitit")

from worldstereo.launch import Job, LaunchConfig, run_jobs  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/


def _work(name, seconds):
    t0 = time.time()
    time.sleep(seconds)
    return {"name": name, "pid": os.getpid(), "start": t0, "end": time.time()}


def _boom(name):
    raise RuntimeError(f"scene {name} is broken")


def test_local_parallel_and_failure_isolated(tmp_path):
    jobs = [Job("a", _work, ("a", 1.5)), Job("b", _work, ("b", 1.5)), Job("bad", _boom, ("bad",))]
    out = run_jobs(jobs, LaunchConfig(launcher="local", max_parallel=3, log_dir=tmp_path / "logs"))
    by = {o.name: o for o in out}
    assert by["a"].status == "done" and by["b"].status == "done"
    assert by["bad"].status == "failed" and "broken" in by["bad"].error
    ra, rb = by["a"].result, by["b"].result
    assert len({ra["pid"], rb["pid"], os.getpid()}) == 3  # separate processes
    assert ra["start"] < rb["end"] and rb["start"] < ra["end"]  # overlapping in time
    assert (tmp_path / "logs" / "a").is_dir() and any((tmp_path / "logs" / "bad").rglob("*.err"))


def test_finished_jobs_are_skipped(tmp_path):
    marker = tmp_path / "done"
    marker.touch()
    out = run_jobs([Job("x", _boom, ("x",), done=marker.exists)], LaunchConfig(log_dir=tmp_path / "logs"))
    assert out[0].status == "skipped"


def test_slurm_without_sbatch_is_a_clear_error(tmp_path, monkeypatch):
    from worldstereo.errors import InputError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="sbatch"):
        run_jobs([Job("x", _work, ("x", 0))], LaunchConfig(launcher="slurm", log_dir=tmp_path))


def _bad_input(path):
    from worldstereo.errors import InputError

    raise InputError(path, "not a readable image (png/jpg expected)")


def test_bad_input_reported_by_its_one_line_error_and_log_tail(tmp_path, capfd):
    out = run_jobs([Job("ok", _work, ("ok", 0)), Job("bad", _bad_input, ("/data/x.png",))],
                   LaunchConfig(launcher="local", log_dir=tmp_path / "logs"))
    bad = out[1]
    assert out[0].status == "done" and bad.status == "failed"
    assert bad.error == "error: /data/x.png: not a readable image (png/jpg expected)"
    err_log = next((tmp_path / "logs" / "bad").glob("*_log.err")).read_text().splitlines()
    assert bad.error in err_log  # the one line comes from the job's own log
    assert bad.extra["log_tail"][-1] == "worldstereo.errors.InputError: /data/x.png: not a readable image (png/jpg expected)"
    err = capfd.readouterr().err
    assert f"WARNING: job bad failed: {bad.error} (logs: {tmp_path / 'logs' / 'bad'})" in err
    assert "    | worldstereo.errors.InputError: /data/x.png: not a readable image" in err  # the log's last lines
    assert "[launch] 1 done, 1 failed, 0 already finished in" in err
    assert "[launch] local: 0 pending, 0 running, 1 done, 1 failed of 2" in err


def test_sbatch_script_carries_the_launch_options(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    from worldstereo.launch import REPO_ROOT, slurm_parameters

    cfg = LaunchConfig(launcher="slurm", partition="gpu", gpus_per_job=1, gres="gpu:a100:1", cpus_per_job=8,
                       mem_gb=32, timeout_min=90, max_parallel=2, account="lab", slurm_extra=("exclude=node12",))
    text = _make_sbatch_string(command="run", folder=tmp_path, map_count=5, **slurm_parameters(cfg, 5))
    sbatch = {ln for ln in text.splitlines() if ln.startswith("#SBATCH")}
    for want in ("--partition=gpu", "--gpus-per-node=1", "--gres=gpu:a100:1", "--cpus-per-task=8", "--mem=32G",
                 "--time=90", "--array=0-4%2", "--account=lab", "--exclude=node12"):
        assert f"#SBATCH {want}" in sbatch, want
    assert f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" in text.splitlines()
    no_gpu = _make_sbatch_string(command="run", folder=tmp_path, **slurm_parameters(LaunchConfig(), 1))
    assert "gpus" not in no_gpu and "gres" not in no_gpu  # a cluster without GPUs must not be asked for 0


def test_slurm_extra_needs_key_value():
    from worldstereo.errors import InputError
    from worldstereo.launch import slurm_parameters

    with pytest.raises(InputError, match="--slurm-extra 'exclusive': expected key=value"):
        slurm_parameters(LaunchConfig(slurm_extra=("exclusive",)), 1)
