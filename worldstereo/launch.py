"""Batch execution through submitit: one job per scene, on this machine or on Slurm.

Launchers:
    local  every job in its own process on this machine, at most `max_parallel` at a time
    slurm  one Slurm job per scene (a job array), Slurm parameters from `LaunchConfig`
    debug  in this process, one after the other; a failure opens pdb (submitit's DebugExecutor)

Logs: <log_dir>/<job name>/ holds submitit's stdout / stderr of each job. A job whose `done`
check passes is skipped, so a rerun submits only unfinished scenes. A failed job is reported
with its error and log folder; the others still finish.

>>> jobs = [Job("room_000", run_scene, (entry, cfg), done=lambda: out.exists())]
>>> outcomes = run_jobs(jobs, LaunchConfig(launcher="local"))
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from worldstereo.console import info, warn
from worldstereo.errors import InputError

LauncherName = Literal["local", "slurm", "debug"]


@dataclass
class LaunchConfig:
    """Where and how the per-scene jobs run."""

    launcher: LauncherName = "local"
    """local: parallel processes here; slurm: one Slurm job per scene; debug: in-process, pdb on error."""
    max_parallel: int = 2
    """Jobs running at the same time (local), or the job-array parallelism (slurm)."""
    log_dir: Path = Path("logs/jobs")
    """Per-job logs (submitit stdout / stderr and pickled results) go under <log_dir>/<job name>/."""
    partition: Optional[str] = None
    """Slurm partition."""
    gpus_per_job: int = 0
    """GPUs per job (Slurm --gpus-per-node; local: sets CUDA visibility)."""
    cpus_per_job: int = 2
    """CPU cores per job (Slurm --cpus-per-task)."""
    mem_gb: int = 16
    """Memory per job in GB (Slurm --mem)."""
    timeout_min: int = 120
    """Wall-clock limit per job in minutes."""
    account: Optional[str] = None
    """Slurm account."""
    qos: Optional[str] = None
    """Slurm quality of service."""
    constraint: Optional[str] = None
    """Slurm node constraint (e.g. a GPU type)."""
    slurm_extra: tuple[str, ...] = ()
    """Further Slurm options as key=value (e.g. exclude=node12), passed as slurm_additional_parameters."""


@dataclass
class Job:
    """One unit of work: `fn(*args)` run as job `name`; skipped when `done()` is already true.
    fn and args must be picklable (module-level functions, dataclasses, paths)."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    done: Optional[Callable[[], bool]] = None


@dataclass
class JobOutcome:
    name: str
    status: Literal["done", "failed", "skipped"]
    seconds: float = 0.0
    result: Any = None
    error: Optional[str] = None
    log_dir: Optional[str] = None
    job_id: Optional[str] = None
    extra: dict = field(default_factory=dict)


def _executor(cfg: LaunchConfig, folder: Path):
    import submitit

    if cfg.launcher == "debug":
        return submitit.DebugExecutor(folder=folder)
    if cfg.launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=cfg.timeout_min, gpus_per_node=cfg.gpus_per_job)
        return ex
    if shutil.which("sbatch") is None:
        raise InputError(None, "--launcher slurm: no Slurm here (sbatch not found); use --launcher local")
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = dict(timeout_min=cfg.timeout_min, cpus_per_task=cfg.cpus_per_job, mem_gb=cfg.mem_gb,
                                  gpus_per_node=cfg.gpus_per_job, tasks_per_node=1, nodes=1,
                                  slurm_array_parallelism=cfg.max_parallel)
    if cfg.partition:
        params["slurm_partition"] = cfg.partition
    if cfg.account:
        params["slurm_account"] = cfg.account
    if cfg.qos:
        params["slurm_qos"] = cfg.qos
    if cfg.constraint:
        params["slurm_constraint"] = cfg.constraint
    if cfg.slurm_extra:
        params["slurm_additional_parameters"] = dict(kv.split("=", 1) for kv in cfg.slurm_extra)
    ex.update_parameters(**params)
    return ex


def _collect(job, name: str, t0: float, folder: Path) -> JobOutcome:
    try:
        res = job.result()
        return JobOutcome(name, "done", time.time() - t0, res, log_dir=str(folder), job_id=str(job.job_id))
    except Exception as e:  # submitit.core.utils.FailedJobError and friends: keep going
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        exc = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln)]
        msg = exc[-1] if exc else (lines[0] if lines else e.__class__.__name__)
        return JobOutcome(name, "failed", time.time() - t0, error=msg, log_dir=str(folder),
                          job_id=str(getattr(job, "job_id", "")))


def run_jobs(jobs: list[Job], cfg: LaunchConfig, poll_s: float = 0.2) -> list[JobOutcome]:
    """Run the unfinished jobs with the chosen launcher; return one outcome per job, in order."""
    outcomes: dict[str, JobOutcome] = {}
    todo = []
    for j in jobs:
        if j.done is not None and j.done():
            outcomes[j.name] = JobOutcome(j.name, "skipped")
        else:
            todo.append(j)
    if todo:
        info(f"[launch] {len(todo)} job(s) to run, {len(jobs) - len(todo)} already finished ({cfg.launcher})")
    if cfg.launcher == "slurm":
        submitted = []
        for j in todo:  # one folder per job keeps logs apart; the array parallelism is set per executor
            folder = cfg.log_dir / j.name
            submitted.append((j, _executor(cfg, folder).submit(j.fn, *j.args), time.time(), folder))
            info(f"[launch] submitted {j.name} as Slurm job {submitted[-1][1].job_id}; logs {folder}")
        for j, job, t0, folder in submitted:
            outcomes[j.name] = _collect(job, j.name, t0, folder)
    else:
        pending = list(todo)
        running: list[tuple[Job, Any, float, Path]] = []
        limit = 1 if cfg.launcher == "debug" else max(1, cfg.max_parallel)
        while pending or running:
            while pending and len(running) < limit:
                j = pending.pop(0)
                folder = cfg.log_dir / j.name
                running.append((j, _executor(cfg, folder).submit(j.fn, *j.args), time.time(), folder))
            finished = [r for r in running if cfg.launcher == "debug" or r[1].done()]
            for r in finished:
                running.remove(r)
                outcomes[r[0].name] = _collect(r[1], r[0].name, r[2], r[3])
            if not finished:
                time.sleep(poll_s)
    for o in outcomes.values():
        if o.status == "failed":
            warn(f"job {o.name} failed: {o.error} (logs: {o.log_dir})")
    return [outcomes[j.name] for j in jobs]
