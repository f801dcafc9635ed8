# Two commands from a clean clone: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# Where the registry in reach does not carry a CPU wheel, point this at one, e.g.
# make test TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
TORCH_CPU_INDEX ?=

.PHONY: demo test lint typecheck bench clean help

help:
	@echo "make demo  - set up .venv and run the quickstart recipe (offline, scikit-learn digits)"
	@echo "make test  - set up .venv with the dev extra and run the default test suite"
	@echo "make lint / make typecheck - ruff and mypy"

# torch first: the CPU build where no NVIDIA GPU is present, so pip never pulls CUDA packages.
$(VENV)/.torch:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: installing torch $(TORCH_VERSION) (CUDA build)"; \
	  $(PIP) install --quiet "torch==$(TORCH_VERSION)"; \
	else \
	  echo "no NVIDIA GPU: installing the CPU build of torch $(TORCH_VERSION)"; \
	  $(PIP) install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX)); \
	fi
	touch $@

$(VENV)/.demo: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[demo]"
	touch $@

$(VENV)/.dev: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[dev,demo]"
	touch $@

demo: $(VENV)/.demo
	$(VENV)/bin/trinity fit --config recipes/quickstart.yaml

test: $(VENV)/.dev
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

bench: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[bench]"

clean:
	rm -rf $(VENV) lightning_logs outputs .pytest_cache .mypy_cache .ruff_cache
