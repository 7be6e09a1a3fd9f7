# Quickstart: `make demo` (creates .venv, installs pinned deps, runs the demo), `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install demo test test-slow clean

install: $(VENV)/.installed

# constraints.txt pins every package: an unpinned torch would pull GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# the demo study as a Ray sweep, offline, W&B runs written locally (sync later with `wandb sync`),
# then its report (tables beside the paper's, figures, report.html; the last line is its path)
demo: install
	$(PY) sweeps/run.py --grid demo --wandb offline
	$(PY) analysis/report.py results/sweeps/demo

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache results
