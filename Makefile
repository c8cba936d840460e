# Every target sets up what it needs: `make figures` and `make test` work on a fresh clone.
#   make figures                 run every notebook in order at the default scale, in place
#   make figures SCALE=smoke     the same at another scale; outputs go under data/scales/<scale>/
#   make test                    unit tests of lib, then the notebooks under nbval at the smoke scale
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCALE ?= default
NOTEBOOK ?=
# OpenMP threads wait passively: with another process on one core, spinning threads made a forward pass
# 14x slower on 2 cores. Exported before any Python starts (notebook kernels and pytest inherit it).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup data figures test unit nbval lint lab bench clean

setup: $(STAMP)

# The venv is rebuilt only when the pins or the package declaration change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

data: $(STAMP)
	$(PY) -m lib.data

figures: data
	$(PY) -m lib.notebooks --scale $(SCALE) $(if $(NOTEBOOK),--only $(NOTEBOOK))

unit: data
	$(PY) -m pytest tests

nbval: data
	REPRO_SCALE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

test: unit nbval

lint: $(STAMP)
	$(PY) -m ruff check lib tests notebooks

lab: data
	$(VENV)/bin/jupyter lab notebooks

bench: data
	$(PY) -m pytest tests/bench -s

clean:
	rm -rf $(VENV) data/cache data/scales data/mnist.npz .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
