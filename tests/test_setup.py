"""`make setup` (scripts/setup.sh): the project's own venv from the distribution's python, a no-op rerun,
one-line errors for an interpreter that cannot make a venv, and the benchmark runner behind `make bench`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
# Variables that would point the setup at another environment or leak the caller's make settings.
CALLER_ONLY = ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS",
               "MFLAGS", "MAKELEVEL", "PYTHON", "EXTRAS", "TORCH_SPEC", "TORCH_INDEX")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CALLER_ONLY}


def copy_checkout(dst: Path) -> None:
    """The files git knows (tracked, and untracked ones not ignored): what a fresh clone has, no .venv."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the scratch copy is made from `git ls-files`")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         check=True, capture_output=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the work tree is listed but absent
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def make_setup(repo: Path, python: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(["make", "setup", f"PYTHON={python}"], cwd=repo, env=clean_env(), capture_output=True,
                          text=True)
    return proc, time.perf_counter() - t0


@pytest.mark.slow
def test_make_setup_builds_venv_from_system_python_and_reruns_as_noop(tmp_path):
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"{SYSTEM_PYTHON} is absent: no distribution python to test against")
    repo = tmp_path / "checkout"
    copy_checkout(repo)

    first, t_first = make_setup(repo, SYSTEM_PYTHON)
    assert first.returncode == 0, first.stdout + first.stderr
    print(f"\nfresh make setup: {t_first:.0f} s")
    venv_py = repo / ".venv" / "bin" / "python"
    cfg = (repo / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg, cfg  # made by the distribution's python, not the one running pytest

    # From a neutral folder so the import goes through the install, not the current directory.
    probe = subprocess.run([str(venv_py), "-c", "import torch, worldstereo; print(worldstereo.__file__); "
                            "print(torch.__version__)"], cwd=tmp_path, env=clean_env(), capture_output=True,
                           text=True)
    assert probe.returncode == 0, probe.stderr
    ws_file, torch_version = probe.stdout.split()
    assert Path(ws_file).resolve() == (repo / "worldstereo" / "__init__.py").resolve()
    assert torch_version.startswith("2.13.0")

    second, t_second = make_setup(repo, SYSTEM_PYTHON)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "up to date, nothing to do" in second.stdout, second.stdout
    assert "installing" not in second.stdout
    assert t_second < 30, f"second make setup took {t_second:.1f} s"


def setup_script_copy(tmp_path: Path) -> Path:
    """scripts/setup.sh and pyproject.toml alone: enough for the checks that run before any install."""
    repo = tmp_path / "checkout"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    return repo


def run_setup(repo: Path, python: str) -> subprocess.CompletedProcess:
    env = clean_env() | {"PYTHON": python}
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True)


def test_setup_missing_interpreter_is_one_line_error(tmp_path):
    repo = setup_script_copy(tmp_path)
    proc = run_setup(repo, str(tmp_path / "no_such_python3"))
    assert proc.returncode == 2
    assert proc.stderr == f"error: {tmp_path / 'no_such_python3'}: no such interpreter; name one with " \
                          "PYTHON=/path/to/python3\n"
    assert not (repo / ".venv").exists()


def test_setup_without_ensurepip_names_the_apt_package(tmp_path):
    """A Debian python without python3-venv: simulated by shadowing ensurepip with a module that fails."""
    repo = setup_script_copy(tmp_path)
    shadow = tmp_path / "shadow"
    (shadow / "ensurepip").mkdir(parents=True)
    (shadow / "ensurepip" / "__init__.py").write_text("raise ModuleNotFoundError('ensurepip')\n")
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\nPYTHONPATH={shadow} exec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    proc = run_setup(repo, str(fake))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {fake}: cannot create a virtual environment (no ensurepip module); "
                           f"install it with: sudo apt-get install python{version}-venv\n")
    assert not (repo / ".venv").exists()


def test_setup_print_python_respects_active_env(tmp_path):
    repo = setup_script_copy(tmp_path)

    def printed(extra: dict[str, str]) -> str:
        return subprocess.run(["bash", "scripts/setup.sh", "--print-python"], cwd=repo, env=clean_env() | extra,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert printed({}) == f"{repo}/.venv/bin/python"
    assert printed({"VIRTUAL_ENV": "/opt/myvenv"}) == "/opt/myvenv/bin/python"
    assert printed({"CONDA_PREFIX": "/opt/conda/envs/ws", "CONDA_DEFAULT_ENV": "ws"}) == "/opt/conda/envs/ws/bin/python"
    # conda's base is activated by default, not chosen: the project's venv is used
    assert printed({"CONDA_PREFIX": "/opt/conda", "CONDA_DEFAULT_ENV": "base"}) == f"{repo}/.venv/bin/python"


def test_bench_runner_runs_a_quick_benchmark_and_rejects_unknown_names():
    env = clean_env() | {"OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--only", "metrics"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "score 100,000 vs 100,000 points" in ok.stdout
    assert [ln.split()[0] for ln in ok.stdout.splitlines() if ln.endswith("  ok")] == ["metrics"]

    bad = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--only", "metrics,nope"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --only: unknown benchmark nope (known: ")
    assert "===" not in bad.stdout  # nothing ran
