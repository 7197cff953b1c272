"""Batch execution through submitit: one job per scene, on this machine or on Slurm.

Launchers:
    local  every job in its own process on this machine, at most `max_parallel` at a time
    slurm  one Slurm job array for all unfinished scenes (submitit's SlurmExecutor), at most
           `max_parallel` tasks running at once; partition, time, cpus, memory, GPUs from `LaunchConfig`
    debug  in this process, one after the other; a failure opens pdb (submitit's DebugExecutor)

Logs: the logs of job <name> are in <log_dir>/<name>/ — submitit's files themselves (local), or
links `<job id>_log.out` / `_log.err` to the files of each Slurm attempt, which live in
<log_dir>/slurm/<job id>/. A job whose `done` check passes is skipped, so a rerun submits only the
unfinished scenes. While jobs run a progress line is printed when the counts change (and every
30 s); at the end one summary line, and for each failed job its one-line error (the job log's
`error: <file>: <problem>` line for bad input) and its log's last lines. Ctrl-C cancels the
submitted Slurm jobs (scancel) and says which.

A job runs with this interpreter (sys.executable) and with this repository first on PYTHONPATH,
so the code that submitted it is the code that runs.

>>> jobs = [Job("room_000", run_scene, (entry, cfg), done=lambda: out.exists())]
>>> outcomes = run_jobs(jobs, LaunchConfig(launcher="slurm", partition="gpu", gpus_per_job=1))
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from worldstereo import slurm
from worldstereo.console import info, warn
from worldstereo.errors import InputError

LauncherName = Literal["local", "slurm", "debug"]
REPO_ROOT = Path(__file__).resolve().parents[1]  # holds worldstereo/ and, in a checkout, configs/
LOG_TAIL_LINES = 8
PROGRESS_EVERY_S = 30.0
QUEUED = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED")  # not running yet (or paused)
RESULT_GRACE_S = 3.0  # a shared file system may show a result file a little after Slurm says COMPLETED


@dataclass
class LaunchConfig:
    """Where and how the per-scene jobs run."""

    launcher: LauncherName = "local"
    """local: parallel processes here; slurm: one Slurm job array, one task per scene; debug: in-process, pdb on error."""
    max_parallel: int = 2
    """Jobs running at the same time (local), or the job array's task limit (slurm --array=…%N)."""
    log_dir: Path = Path("logs/jobs")
    """Per-job logs: <log_dir>/<job name>/ (Slurm attempts' files in <log_dir>/slurm/<job id>/)."""
    partition: Optional[str] = None
    """Slurm partition (default: the cluster's default partition)."""
    gpus_per_job: int = 0
    """GPUs per job (Slurm --gpus-per-node; needs GresTypes=gpu on the cluster). Local: CUDA visibility."""
    gres: Optional[str] = None
    """Slurm --gres instead of / besides --gpus-per-node, e.g. gpu:a100:1 for a GPU type."""
    cpus_per_job: int = 2
    """CPU cores per job (Slurm --cpus-per-task)."""
    mem_gb: int = 16
    """Memory per job in GB (Slurm --mem)."""
    timeout_min: int = 120
    """Wall-clock limit per job in minutes (Slurm --time)."""
    account: Optional[str] = None
    """Slurm account."""
    qos: Optional[str] = None
    """Slurm quality of service."""
    constraint: Optional[str] = None
    """Slurm node constraint (e.g. a GPU type)."""
    slurm_extra: tuple[str, ...] = ()
    """Further sbatch options as key=value (e.g. exclude=node12), passed as submitit additional_parameters."""
    poll_s: float = 2.0
    """Seconds between two looks at the Slurm queue (squeue)."""


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
    """log_tail: the last lines of a failed job's logs."""


def job_main(fn: Callable[..., Any], *args: Any) -> Any:
    """What every job runs: fn(*args); bad input also leaves its one-line `error: …` in the job's log."""
    try:
        return fn(*args)
    except InputError as e:
        print(f"error: {e.one_line()}", file=sys.stderr, flush=True)
        raise


def _with_repo_on_pythonpath(env_value: Optional[str]) -> str:
    return str(REPO_ROOT) if not env_value else f"{REPO_ROOT}{os.pathsep}{env_value}"


# ----------------------------------------------------------------------------- failure reports


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    try:
        return [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()][-n:]
    except OSError:
        return []


def _one_line_error(log_lines: list[str], trace: str = "") -> Optional[str]:
    """The job's one-line error: its `error: …` log line (bad input), else the last exception line."""
    errs = [ln.strip() for ln in log_lines if ln.startswith("error: ")]
    if errs:
        return errs[-1]
    lines = [ln.strip() for ln in (trace or "\n".join(log_lines)).splitlines() if ln.strip()]
    exc = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln)]
    return exc[-1] if exc else None


def _failed(name: str, t0: float, folder: Path, job_id: str, stderr: Path, stdout: Path,
            trace: str = "", state: str = "") -> JobOutcome:
    err_lines = _tail(stderr, 200)
    msg = _one_line_error(err_lines, trace)
    if state == "GONE":
        msg = f"Slurm job {job_id} ended without a result" + (f": {msg}" if msg else "")
    elif state and state != "COMPLETED":
        msg = f"Slurm job {job_id} {state}" + (f": {msg}" if msg else "")
    tail = err_lines[-LOG_TAIL_LINES:] or _tail(stdout)
    return JobOutcome(name, "failed", time.time() - t0, error=msg or "failed without an error message",
                      log_dir=str(folder), job_id=job_id, extra={"log_tail": tail})


def _collect(job, name: str, t0: float, folder: Path, state: str = "") -> JobOutcome:
    """Outcome of a job that has ended: its result, or its error and log tail."""
    if not job.paths.result_pickle.exists() and state:  # killed, timed out, out of memory: no result written
        return _failed(name, t0, folder, str(job.job_id), job.paths.stderr, job.paths.stdout, state=state)
    try:
        res = job.result()
        return JobOutcome(name, "done", time.time() - t0, res, log_dir=str(folder), job_id=str(job.job_id))
    except Exception as e:  # submitit's FailedJobError carries the job's traceback
        return _failed(name, t0, folder, str(getattr(job, "job_id", "")), job.paths.stderr, job.paths.stdout,
                       trace=str(e))


# ----------------------------------------------------------------------------- executors


def _local_executor(cfg: LaunchConfig, folder: Path):
    import submitit

    if cfg.launcher == "debug":
        return submitit.DebugExecutor(folder=folder)
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=cfg.timeout_min, gpus_per_node=cfg.gpus_per_job)
    return ex


def slurm_parameters(cfg: LaunchConfig, n_jobs: int) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (each becomes an #SBATCH line) for `cfg`."""
    params: dict[str, Any] = dict(
        job_name="worldstereo", time=cfg.timeout_min, cpus_per_task=cfg.cpus_per_job, mem=f"{cfg.mem_gb}G",
        nodes=1, ntasks_per_node=1, array_parallelism=max(1, min(cfg.max_parallel, n_jobs)),
        # the job runs this repository's code, whatever the job's shell puts on PYTHONPATH
        setup=[f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"])
    if cfg.gpus_per_job > 0:
        params["gpus_per_node"] = cfg.gpus_per_job
    optional = dict(partition=cfg.partition, gres=cfg.gres, account=cfg.account, qos=cfg.qos,
                    constraint=cfg.constraint)
    params.update({k: v for k, v in optional.items() if v})
    if cfg.slurm_extra:
        extra = {}
        for kv in cfg.slurm_extra:
            key, eq, value = kv.partition("=")
            if not eq or not key:
                raise InputError(None, f"--slurm-extra {kv!r}: expected key=value (e.g. exclude=node12)")
            extra[key.replace("-", "_")] = value
        params["additional_parameters"] = extra
    return params


# ----------------------------------------------------------------------------- local / debug


def _run_local(todo: list[Job], cfg: LaunchConfig, outcomes: dict[str, JobOutcome], poll_s: float) -> None:
    pending = list(todo)
    running: list[tuple[Job, Any, float, Path]] = []
    limit = 1 if cfg.launcher == "debug" else max(1, cfg.max_parallel)
    progress = _Progress(len(todo), "local")
    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _with_repo_on_pythonpath(old_path)  # the job processes inherit it
    try:
        while pending or running:
            while pending and len(running) < limit:
                j = pending.pop(0)
                folder = cfg.log_dir / j.name
                running.append((j, _local_executor(cfg, folder).submit(job_main, j.fn, *j.args), time.time(), folder))
            finished = [r for r in running if cfg.launcher == "debug" or r[1].done()]
            for r in finished:
                running.remove(r)
                outcomes[r[0].name] = _collect(r[1], r[0].name, r[2], r[3])
            progress.show(len(pending), len(running), outcomes)
            if not finished:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for _, job, _, _ in running:
            job.cancel(check=False)
        info(f"[launch] interrupted: stopped {len(running)} running local job(s)")
        raise
    finally:
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path


class _Progress:
    """One line when the counts change, and at least every PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int, where: str):
        self.total, self.where, self.t0 = total, where, time.time()
        self.last: tuple = ()
        self.last_t = 0.0

    def show(self, pending: int, running: int, outcomes: dict[str, JobOutcome]) -> None:
        done = sum(o.status == "done" for o in outcomes.values())
        failed = sum(o.status == "failed" for o in outcomes.values())
        counts = (pending, running, done, failed)
        now = time.time()
        if counts != self.last or now - self.last_t >= PROGRESS_EVERY_S:
            info(f"[launch] {self.where}: {pending} pending, {running} running, {done} done, {failed} failed "
                 f"of {self.total} ({now - self.t0:.0f}s)")
            self.last, self.last_t = counts, now


# ----------------------------------------------------------------------------- slurm


def _link_logs(cfg: LaunchConfig, name: str, job) -> Path:
    """<log_dir>/<name>/<job id>_log.{out,err} → the attempt's files under <log_dir>/slurm/<job id>/."""
    scene_logs = cfg.log_dir / name
    scene_logs.mkdir(parents=True, exist_ok=True)
    for target in (job.paths.stdout, job.paths.stderr):
        link = scene_logs / f"{job.job_id}_{target.name.rsplit('_', 1)[-1]}"  # <id>_log.out / <id>_log.err
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(target.resolve(), scene_logs.resolve()))
    return scene_logs


def _run_slurm(todo: list[Job], cfg: LaunchConfig, outcomes: dict[str, JobOutcome]) -> None:
    slurm.require_slurm()
    cfg = dataclasses.replace(cfg, log_dir=cfg.log_dir.resolve())  # a job may start in another directory
    jobs = _submit_and_link(todo, cfg)
    what = f"Slurm job array {str(jobs[0][1].job_id).split('_')[0]}" if len(jobs) > 1 else f"Slurm job {jobs[0][1].job_id}"
    info(f"[launch] submitted {len(jobs)} job(s) as {what}; logs in {cfg.log_dir}/<job name>/")
    progress = _Progress(len(jobs), what)
    waiting = list(jobs)
    ended_at: dict[str, float] = {}  # job id → when Slurm first said it ended
    try:
        while waiting:
            st = slurm.states([str(job.job_id) for _, job, _, _ in waiting])
            for item in list(waiting):
                j, job, t0, folder = item
                jid = str(job.job_id)
                state = st.get(jid, "GONE")  # GONE: Slurm forgot it (MinJobAge) and there is no sacct
                if state in slurm.ENDED or state == "GONE":
                    ended_at.setdefault(jid, time.time())
                if job.paths.result_pickle.exists():
                    outcomes[j.name] = _collect(job, j.name, t0, folder)
                elif jid in ended_at and time.time() - ended_at[jid] >= RESULT_GRACE_S:
                    # ended without a result: killed, timed out, out of memory, or the job could not start
                    outcomes[j.name] = _collect(job, j.name, t0, folder, state=state)
                else:
                    continue
                waiting.remove(item)
            n_pending = sum(st.get(str(job.job_id), "PENDING") in QUEUED for _, job, _, _ in waiting)
            progress.show(n_pending, len(waiting) - n_pending, outcomes)
            if waiting:
                time.sleep(cfg.poll_s)
    except KeyboardInterrupt:
        ids = [str(job.job_id) for _, job, _, _ in waiting]
        slurm.cancel(ids)
        info(f"[launch] interrupted: cancelled Slurm job(s) {' '.join(ids)} (scancel)")
        raise


def _remove_new(folder: Path, before: set[Path], existed: set[Path]) -> None:
    """Undo a refused submission: submitit's script and pickles, and the folders it created."""
    for p in set(folder.iterdir()) - before if folder.exists() else ():
        if p.is_file() or p.is_symlink():
            p.unlink()
    for d in (folder, *folder.parents):
        if d in existed or not d.exists() or any(d.iterdir()):
            break
        d.rmdir()


def _submit_and_link(todo: list[Job], cfg: LaunchConfig) -> list[tuple[Job, Any, float, Path]]:
    import submitit

    ex = submitit.SlurmExecutor(folder=cfg.log_dir / "slurm" / "%j")  # python: this sys.executable
    ex.update_parameters(**slurm_parameters(cfg, len(todo)))
    t0 = time.time()
    existed = {p for p in (cfg.log_dir / "slurm", *(cfg.log_dir / "slurm").parents) if p.exists()}
    before = set((cfg.log_dir / "slurm").iterdir()) if cfg.log_dir / "slurm" in existed else set()
    try:
        with ex.batch():
            submitted = [ex.submit(job_main, j.fn, *j.args) for j in todo]
    except Exception as e:  # sbatch refused (unknown partition, GPUs the cluster has not got, …)
        _remove_new(cfg.log_dir / "slurm", before, existed)
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        refused = [ln for ln in lines if "error" in ln.lower()]
        raise InputError(None, "--launcher slurm: sbatch refused the jobs: "
                               + (refused[-1] if refused else lines[-1] if lines else type(e).__name__))
    return [(j, job, t0, _link_logs(cfg, j.name, job)) for j, job in zip(todo, submitted)]


# ----------------------------------------------------------------------------- entry point


def report(outcomes: list[JobOutcome], seconds: float) -> None:
    """The final summary line, and each failed job's error and log tail."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("done", "failed", "skipped")}
    for o in outcomes:
        if o.status == "failed":
            warn(f"job {o.name} failed: {o.error} (logs: {o.log_dir})")
            for line in o.extra.get("log_tail", []):
                info(f"    | {line}")
    info(f"[launch] {count['done']} done, {count['failed']} failed, {count['skipped']} already finished "
         f"in {seconds:.1f}s")


def run_jobs(jobs: list[Job], cfg: LaunchConfig, poll_s: float = 0.2) -> list[JobOutcome]:
    """Run the unfinished jobs with the chosen launcher; return one outcome per job, in order.

    Raises InputError when Slurm is asked for but unreachable or refuses the submission;
    KeyboardInterrupt after cancelling what was submitted."""
    t_start = time.time()
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
            _run_slurm(todo, cfg, outcomes)
        else:
            _run_local(todo, cfg, outcomes, poll_s)
    result = [outcomes[j.name] for j in jobs]
    report(result, time.time() - t_start)
    return result
