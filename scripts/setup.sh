#!/usr/bin/env bash
# Set up worldstereo's Python environment: torch first, then `pip install -e .[dev,EXTRAS]`. Safe to rerun.
#
#   bash scripts/setup.sh                  # what `make setup` runs
#   bash scripts/setup.sh --print-python   # the environment's python (the Makefile runs everything with it)
#
# Where: an activated virtualenv ($VIRTUAL_ENV) or conda env other than base ($CONDA_PREFIX) is the
# user's choice and is used as it is; otherwise the project's own .venv/, made with `$PYTHON -m venv`
# (PYTHON defaults to python3). Never the interpreter's own site-packages: Debian and Ubuntu refuse
# that (PEP 668, "externally-managed-environment"), and elsewhere it mixes with the system's packages.
#
# Settings (environment variables, or make variables: `make setup EXTRAS=cuda,diffusion`):
#   PYTHON       interpreter that creates .venv/ (default python3)
#   EXTRAS       extras of pyproject.toml installed besides dev, comma-separated (cuda, diffusion, ...)
#   TORCH_SPEC   the torch requirement installed first (default torch==2.13.0)
#   TORCH_INDEX  an extra pip index for that torch install only (e.g. PyTorch's CUDA wheel index)
#
# A stamp in the environment (.worldstereo-setup) records a hash of pyproject.toml, the torch pin and
# index, this checkout's path and the interpreter, plus the extras installed; while it matches and
# holds the extras asked for, a rerun only says there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-}
# The CPU wheel where pip's index offers one (a bare `torch` can pull several GB of CUDA wheels).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
STAMP_NAME=.worldstereo-setup

die() {  # die FILE PROBLEM: the project's one-line error, exit code 2
  echo "error: $1: $2" >&2
  exit 2
}

env_prefix() {
  if [[ -n "${VIRTUAL_ENV:-}" ]]; then
    echo "$VIRTUAL_ENV"
  elif [[ -n "${CONDA_PREFIX:-}" && "${CONDA_DEFAULT_ENV:-base}" != base ]]; then
    echo "$CONDA_PREFIX"  # conda's base is activated by default, so it is not taken as a choice
  else
    echo "$PROJECT/.venv"
  fi
}

make_venv() {  # make_venv DIR: create the project's venv with $PY, or say in one line why it cannot
  local dir=$1
  if [[ -e "$dir/bin/python" ]]; then
    "$dir/bin/python" -c '' 2>/dev/null ||
      die "$dir" "its python does not run (was the interpreter that made it removed?); rm -rf $dir and rerun make setup"
    return
  fi
  [[ -e "$dir" ]] && die "$dir" "exists but is not a virtual environment (no bin/python); rm -rf $dir and rerun make setup"
  command -v "$PY" >/dev/null 2>&1 || die "$PY" "no such interpreter; name one with PYTHON=/path/to/python3"
  local ver
  ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "$PY" "does not run"
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$PY" "worldstereo needs Python >= 3.10, this is $ver; name another with PYTHON=/path/to/python3"
  # Debian and Ubuntu ship venv's ensurepip (which puts pip in the venv) in a separate package.
  "$PY" -c 'import venv, ensurepip' 2>/dev/null ||
    die "$PY" "cannot create a virtual environment (no ensurepip module); install it with: sudo apt-get install python$ver-venv"
  echo "setup: creating $dir with $PY (Python $ver)"
  "$PY" -m venv "$dir" || { rm -rf "$dir"; die "$dir" "python -m venv failed (see above)"; }
}

norm_extras() {  # norm_extras A,B C ...: sorted, unique, comma-separated extras, dev always included
  echo "dev $*" | tr ', ' '\n\n' | sed '/^$/d' | sort -u | paste -sd, -
}

env_key() {  # env_key PYTHON: what the installed environment depends on, hashed
  { sha256sum pyproject.toml; echo "$TORCH_SPEC|$TORCH_INDEX|$PROJECT"; "$1" -c 'import sys; print(sys.version)'; } |
    sha256sum | cut -c1-16
}

is_current() {  # is_current PYTHON STAMP KEY WANT: the stamp matches and the packages are still there
  local env_py=$1 stamp=$2 key=$3 want=$4 old_key old_extras
  [[ -f "$stamp" ]] || return 1
  old_key=$(sed -n 's/^key //p' "$stamp")
  old_extras=$(sed -n 's/^extras //p' "$stamp")
  [[ "$old_key" == "$key" ]] || return 1
  [[ "$(norm_extras "$old_extras" "$want")" == "$(norm_extras "$old_extras")" ]] || return 1
  # A pip uninstall since the stamp was written makes it stale.
  "$env_py" -c 'import importlib.metadata as m; m.version("worldstereo"); m.version("torch")' 2>/dev/null
}

main() {
  local prefix env_py stamp key want old_extras extras t0
  prefix=$(env_prefix)
  env_py=$prefix/bin/python
  if [[ "${1:-}" == --print-python ]]; then
    echo "$env_py"
    return
  fi
  t0=$SECONDS
  if [[ "$prefix" == "$PROJECT/.venv" ]]; then
    make_venv "$prefix"
  else
    echo "setup: using the active environment $prefix"
    "$env_py" -c '' 2>/dev/null || die "$prefix" "active environment without a working bin/python"
  fi
  stamp=$prefix/$STAMP_NAME
  key=$(env_key "$env_py")
  want=$(norm_extras "$EXTRAS")
  if is_current "$env_py" "$stamp" "$key" "$want"; then
    echo "setup: $prefix is up to date, nothing to do (extras $(sed -n 's/^extras //p' "$stamp"))"
    return
  fi
  # Extras installed earlier stay: `make setup EXTRAS=cuda` then `make test` must not flip-flop.
  old_extras=$( [[ -f "$stamp" ]] && sed -n 's/^extras //p' "$stamp" || true)
  extras=$(norm_extras "$old_extras" "$want")
  rm -f "$stamp"  # an interrupted install must not look current
  "$env_py" -m pip --version >/dev/null 2>&1 || die "$prefix" "has no pip; install pip into it (or rm -rf .venv and rerun)"
  echo "setup: installing $TORCH_SPEC, then worldstereo[$extras] into $prefix"
  "$env_py" -m pip install --quiet ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "$TORCH_SPEC"
  "$env_py" -m pip install --quiet -e ".[$extras]"
  printf 'key %s\nextras %s\n' "$key" "$extras" >"$stamp"
  echo "setup: done in $((SECONDS - t0)) s. Run with $env_py, or activate: source $prefix/bin/activate"
}

main "$@"
