#!/usr/bin/env bash
# Install worldstereo and its test dependencies into the current Python. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The CPU wheel first: a bare `torch` requirement would pull several GB of CUDA wheels.
"$PY" -m pip install --quiet "torch==2.13.0"
"$PY" -m pip install --quiet -e ".[dev]"
