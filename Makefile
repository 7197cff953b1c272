PYTHON ?= python3

.PHONY: setup example test test-fast bench

setup:            ## install torch (CPU) + worldstereo + test deps
	PYTHON=$(PYTHON) bash scripts/setup.sh

example: setup    ## set up, then run the whole pipeline on the bundled motorcycle photo
	$(PYTHON) run_pipeline.py --example motorcycle

test: setup       ## the full test suite (what CI runs)
	$(PYTHON) -m pytest -q

test-fast:        ## skip the slow end-to-end tests
	$(PYTHON) -m pytest -q -m "not slow"

bench:
	$(PYTHON) -m benchmarks.run_all
