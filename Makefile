# Every target sets up what it needs: `make figures` and `make test` work on a fresh clone.
#   make figures                 run every notebook in order at the default scale, in place
#   make figures SCALE=smoke     the same at another scale; outputs go under data/scales/<scale>/
#   make figures DATASET=cifar10 DATA_DIR=... MODEL=...   another dataset and model (docs/scaling.md); outputs go under
#                                data/scales/<dataset>[-<model>]-<scale>/
#   make figures INCEPTION=path/pt_inception-2015-12-05-6726825d.pth   notebook 07 in Inception features (FID)
#   make test                    unit tests of lib, then the notebooks under nbval at the smoke scale
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCALE ?= default
NOTEBOOK ?=
DATASET ?=
DATA_DIR ?=
MODEL ?=
INCEPTION ?=
STUDY_ARGS := $(if $(DATASET),--dataset "$(DATASET)") $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(if $(MODEL),--model "$(MODEL)") \
	$(if $(INCEPTION),--inception "$(INCEPTION)")
# OpenMP threads wait passively: with another process on one core, spinning threads made a forward pass
# 14x slower on 2 cores. Exported before any Python starts (notebook kernels and pytest inherit it).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup bytecode data smoke-caches figures test unit nbval lint lab bench clean

setup: $(STAMP)

# The venv is rebuilt only when the pins or the package declaration change. pip installs torch (so that
# pip's own configuration picks the build: a local CPU wheel here, the CUDA one on a GPU machine), then uv
# installs the other pins in parallel: about 20 s for a cold venv instead of 143 s with pip alone. Where
# uv cannot be had, pip does all the work.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile $$(grep -E '^torch==' requirements.txt)
	@$(PY) -m pip install --quiet uv==$(UV_VERSION) || echo "uv unavailable: installing with pip (slower)"
	@if test -x $(UV); then \
		$(UV) pip install --quiet --python $(PY) -r requirements.txt && \
		$(UV) pip install --quiet --python $(PY) --no-deps -e . ; \
	else \
		$(PY) -m pip install --quiet -r requirements.txt && $(PY) -m pip install --quiet --no-deps -e . ; \
	fi
	@$(MAKE) --no-print-directory bytecode
	@touch $@

# Bytecode of what every process imports, written once per venv. Where PYTHONDONTWRITEBYTECODE is set (as on
# the CI machines) nothing is cached, and each of make test's ~14 Python processes (the caches' builders,
# the pytest workers, one kernel per notebook) compiled torch, pandas and matplotlib from source again:
# 15 s instead of 5 s per import. Two processes, one for lib (torch, numpy, pandas, matplotlib, scipy,
# scikit-learn), one for the notebook and test stack; only .venv and lib/ get __pycache__ folders.
LIB_IMPORTS := import pkgutil, importlib, lib; [importlib.import_module(m.name) for m in pkgutil.walk_packages(lib.__path__, "lib.") if not m.name.endswith("__main__")]
STACK_IMPORTS := import seaborn, ipykernel.kernelapp, ipykernel.ipkernel, jupyter_client, nbformat, nbclient, papermill, pytest, nbval.plugin, xdist.plugin
bytecode:
	@env -u PYTHONDONTWRITEBYTECODE $(PY) -c '$(LIB_IMPORTS)' & pid=$$!; \
		env -u PYTHONDONTWRITEBYTECODE $(PY) -c '$(STACK_IMPORTS)'; wait $$pid

data: $(STAMP)
	$(PY) -m lib.data.mnist

# At the default scale the README's scorecard is then regenerated from the table the notebooks wrote.
figures: data
	$(PY) -m lib.notebooks --scale $(SCALE) $(if $(NOTEBOOK),--only $(NOTEBOOK)) $(STUDY_ARGS)
	$(if $(filter default,$(SCALE)),$(if $(strip $(STUDY_ARGS)),,$(PY) -m lib.verdicts.scorecard --readme))

# Tests run in JOBS pytest-xdist workers with one core's share of torch threads each (small tensors
# scale badly across threads; whole tests scale well across processes). nbval keeps each notebook's cells
# together on one worker (--dist loadfile); notebooks that need the smoke network wait for the one
# training it (a lock), so the order of the notebooks does not matter.
NPROC := $(shell nproc 2>/dev/null || echo 1)
JOBS ?= $(NPROC)
WORKER_THREADS := $(shell echo $$(( $(NPROC) / $(JOBS) > 0 ? $(NPROC) / $(JOBS) : 1 )))
XDIST := -n $(JOBS) -p no:cacheprovider

unit: data
	REPRO_THREADS=$(WORKER_THREADS) $(PY) -m pytest $(XDIST) tests

# The smoke network, the feature classifier and the statistics, built side by side before the tests.
smoke-caches: data
	$(PY) -m lib.prepare --scale smoke

nbval: smoke-caches
	REPRO_SCALE=smoke REPRO_THREADS=$(WORKER_THREADS) $(PY) -m pytest $(XDIST) --dist loadfile \
		--nbval-lax --nbval-current-env notebooks

# One pytest session for both, the long notebooks first, the unit tests filling in around them.
test: smoke-caches
	REPRO_SCALE=smoke REPRO_THREADS=$(WORKER_THREADS) $(PY) -m pytest $(XDIST) --dist loadfile \
		--nbval-lax --nbval-current-env notebooks tests

lint: $(STAMP)
	$(PY) -m ruff check lib tests notebooks

# JupyterLab on notebooks/, also as root in a container (lib.lab adds --allow-root there).
lab: data
	$(PY) -m lib.lab

bench: data
	$(PY) -m pytest tests/bench -s

clean:
	rm -rf $(VENV) data/cache data/scales data/mnist.npz .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
