# Everything runs with the environment's python: the project's .venv/ (made by `make setup`), or the
# virtualenv / conda env (not base) you activated. See scripts/setup.sh for the settings.
PYTHON ?= python3
EXTRAS ?=
ENV_PY := $(shell bash scripts/setup.sh --print-python)

.PHONY: setup example test test-fast bench

setup:            ## .venv/ (or the active env) with torch 2.13.0 + worldstereo[dev,EXTRAS]; a no-op when current
	@PYTHON="$(PYTHON)" EXTRAS="$(EXTRAS)" bash scripts/setup.sh

example: setup    ## set up, then run the whole pipeline on the bundled motorcycle photo
	"$(ENV_PY)" run_pipeline.py --example motorcycle

test: setup       ## the full test suite (what CI runs)
	"$(ENV_PY)" -m pytest -q

test-fast: setup  ## skip the slow end-to-end tests
	"$(ENV_PY)" -m pytest -q -m "not slow"

bench: setup      ## every benchmark in its quick mode (python -m benchmarks.run_all --full: BENCHMARKS.md's settings)
	"$(ENV_PY)" -m benchmarks.run_all
