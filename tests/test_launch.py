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
