"""The few Slurm commands the launcher needs: is a controller reachable, job states, cancel.

Job states come from `squeue -t all`, which lists pending, running and recently ended jobs (for
MinJobAge seconds, 300 by default). `sacct` is asked only for jobs squeue no longer knows, and
its failure is tolerated: many small installations (and scripts/local_slurm.sh) have no
accounting database, where sacct only says "accounting storage is disabled".

>>> require_slurm()                       # InputError when no controller answers
>>> states(["123_0", "123_1"])            # {"123_0": "RUNNING", "123_1": "PENDING"}
>>> cancel(["123_0", "123_1"])
"""

from __future__ import annotations

import shutil
import subprocess

from worldstereo.errors import InputError

# Slurm job states after which the job will not run again (anything else is still queued or running).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


def _run(cmd: list[str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)


def require_slurm(timeout_s: float = 20) -> None:
    """Raise InputError (one line, exit 2) unless sbatch exists and a controller answers `scontrol ping`."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        raise InputError(None, "--launcher slurm: no Slurm here (sbatch not found); use --launcher local")
    try:
        r = _run(["scontrol", "ping"], timeout_s)
    except subprocess.TimeoutExpired:
        raise InputError(None, f"--launcher slurm: no Slurm controller answered within {timeout_s:.0f}s "
                               "(scontrol ping); use --launcher local")
    text = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or "is UP" not in text:
        first = text.splitlines()[0] if text else f"exit code {r.returncode}"  # e.g. "Slurmctld(primary) at vm is DOWN"
        raise InputError(None, f"--launcher slurm: no Slurm controller reachable ({first}); use --launcher local")


def _parse(text: str) -> dict[str, str]:
    """`<id>|<STATE>` lines → {id: STATE}; sacct's `CANCELLED by 0` keeps its first word."""
    out = {}
    for line in text.splitlines():
        job_id, _, state = line.partition("|")
        if job_id and state:
            out[job_id.strip()] = state.split()[0].rstrip("+")
    return out


def states(job_ids: list[str]) -> dict[str, str]:
    """Slurm state of each job id (array tasks as `<array>_<index>`); ids Slurm no longer knows are left out."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    r = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(arrays)])
    found = _parse(r.stdout) if r.returncode == 0 else {}
    missing = [j for j in job_ids if j not in found]
    if missing and shutil.which("sacct"):
        r = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(missing)])
        if r.returncode == 0:
            found.update(_parse(r.stdout))
    return {j: found[j] for j in job_ids if j in found}


def cancel(job_ids: list[str]) -> None:
    """scancel these jobs (errors ignored: a job may have ended meanwhile)."""
    if job_ids:
        _run(["scancel", *job_ids])
