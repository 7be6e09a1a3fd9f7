# Quickstart: `make demo` (creates .venv, installs pinned deps, runs the demo), `make test`; `make docs`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install demo test test-slow test-data test-latest docs clean

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

# The slow tests' and benchmarks' CIFAR-10 subset (10%, 18 MB), where none is found: downloads
# CIFAR-10 (163 MB) into the layerlth data cache and cuts it there (docs/development.md).
test-data: install
	$(PY) -m layerlth.data.subset

# The site (docs/, mkdocs.yml) into site/: open site/index.html. Strict: a warning, a broken link or
# anchor, or a reference to a symbol that does not exist fails the build. Offline: no web fonts, the
# search index built here, the API pages read from the source by griffe (nothing imported).
# Material for MkDocs prints an end-of-life notice on every build (fixes until 2027-05-05; see
# docs/development.md); NO_MKDOCS_2_WARNING silences that notice, not mkdocs' warnings.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[docs]"
	touch $@

docs: export NO_MKDOCS_2_WARNING = 1
docs: $(VENV)/.docs-installed
	$(PY) -m mkdocs build --strict --site-dir site

# The newest versions pyproject.toml allows, as a user's `pip install -e ".[dev]"` gets them: a fresh
# venv, only torch held (.ci/hold-torch.txt), not constraints.txt. .ci/versions.py prints every package
# that differs from constraints.txt, asserts torchattacks < 3.4 and requests >= 2.32, and prints the
# differences again when a test fails. Attacks, criteria, trials and one Ray sweep (issue #16).
LATEST := .venv-latest
LATEST_TESTS := tests/test_robustness.py tests/test_criteria.py tests/test_trial.py \
	tests/test_robustness_trial.py::test_dense_and_ticket_rows_carry_robustness_and_a_reused_dense_run_is_evaluated \
	tests/test_sweep_ray.py::test_reused_workers_give_the_results_of_fresh_ones

test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -c .ci/hold-torch.txt -e ".[dev]"
	$(LATEST)/bin/python .ci/versions.py --check
	$(LATEST)/bin/python -m pytest -q $(LATEST_TESTS) || { $(LATEST)/bin/python .ci/versions.py; exit 1; }

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache results site
