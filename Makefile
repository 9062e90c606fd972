# Streamvane: `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_VERSION ?= 3.11
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export STREAMVANE_CACHE ?= $(HOME)/.cache/streamvane
export PYTHONPATH := $(CURDIR)/e2e:$(CURDIR)
STACK := $(PY) -m streamvane_stack
PYTEST := $(VENV)/bin/pytest

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup

.PHONY: install
install: $(VENV)/.installed ## Create the virtual environment with the pinned dependencies
$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v python$(PYTHON_VERSION) >/dev/null || { echo "python$(PYTHON_VERSION) not found: install Python $(PYTHON_VERSION)" >&2; exit 1; }
	@test -x $(UV) || { python$(PYTHON_VERSION) -m venv $(VENV) && $(VENV)/bin/pip install -q uv==0.13.9; }
	$(UV) pip sync -q --python $(PY) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $@

.PHONY: system-deps
system-deps: ## Check (and on Debian install) the system tools the local stack needs
	@bash e2e/stack/system-deps.sh

.PHONY: lock
lock: ## Re-pin requirements.lock from pyproject.toml
	$(UV) pip compile -q pyproject.toml --all-extras --python-version $(PYTHON_VERSION) -o requirements.lock

##@ Development

.PHONY: lint
lint: install ## ruff, mypy and the import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy workers/src operator/src
	$(VENV)/bin/lint-imports

.PHONY: models
models: install ## Build the ONNX models (MiniLM, the ranker, the untrained label head) and the Triton model repositories into the cache
	$(PY) -m models.build

##@ Local stack (Pulsar, kube-apiserver + etcd, Triton on 127.0.0.1)

.PHONY: stack-up
stack-up: install system-deps models ## Start the local stack (fetches and builds what is missing, once)
	$(STACK) up

.PHONY: stack-down
stack-down: ## Stop the local stack; leaves no process behind
	@test -x $(PY) && $(STACK) down || true

.PHONY: stack-status
stack-status: ## Each component's state and address, and the kubeconfig to use
	$(STACK) status

##@ Test

.PHONY: test
# The stack has the three regions the multi-region suite needs (STREAMVANE_REGIONS=0 skips it).
test: export STREAMVANE_REGIONS ?= 3
test: lint tools system-deps models ## Lint, then unit, integration and e2e tests (multi-region too) on a fresh local stack
	$(STACK) up --fresh
	@status=0; STREAMVANE_REQUIRE_STACK=1 $(PYTEST) tests e2e || status=$$?; \
	  $(STACK) down; exit $$status

.PHONY: test-unit
test-unit: install ## Unit tests only (no network)
	$(PYTEST) tests/unit

##@ Operator

.PHONY: crds
crds: install ## Regenerate crds/ (and the chart's copy) from the API models; a test fails on drift
	$(PY) -m streamvane_operator.api.crdgen --out crds
	$(MAKE) chart-crds

.PHONY: schemas
schemas: install ## Regenerate the message schemas (Avro records) the operator registers in Pulsar; a test fails on drift
	$(PY) -m streamvane_worker.stages.avro

.PHONY: run-operator
run-operator: install stack-up ## Operator + process runner against the local stack, in the foreground
	kubectl --kubeconfig $(STREAMVANE_CACHE)/run/kubeconfig apply --server-side --force-conflicts -f crds/
	$(PY) -m process_runner --kubeconfig $(STREAMVANE_CACHE)/run/kubeconfig & runner=$$!; trap "kill $$runner" EXIT; \
	  $(PY) -m streamvane_operator --kubeconfig $(STREAMVANE_CACHE)/run/kubeconfig --log-format plain --worker-log-format console --resync-seconds 10

.PHONY: e2e
e2e: install stack-up ## Pipeline e2e tests only (operator, process runner, workers on the real stack)
	STREAMVANE_REQUIRE_STACK=1 $(PYTEST) -m e2e e2e

##@ Chart and images

.PHONY: tools
tools: ## Build the pinned helm and kubeconform into the cache with Go (once)
	e2e/tools/tool.sh helm >/dev/null
	e2e/tools/tool.sh kubeconform >/dev/null

.PHONY: chart-crds
chart-crds: ## Copy the generated CRDs into the Helm chart (a test fails on drift)
	rm -f charts/streamvane/crds/*.yaml
	cp crds/*.yaml charts/streamvane/crds/

.PHONY: chart-test
chart-test: install tools stack-up ## Lint, schema-check, dry-run and really install the chart
	STREAMVANE_REQUIRE_STACK=1 $(PYTEST) tests/chart e2e/test_helm_validate.py e2e/test_helm_install.py

.PHONY: images-lint
images-lint: install ## hadolint images/Dockerfile
	$(VENV)/bin/hadolint images/Dockerfile

.PHONY: kind-e2e
kind-e2e: ## Images + chart + a pipeline on a kind cluster (needs Docker; skips without)
	e2e/tools/kind-e2e.sh

##@ Benchmarks

.PHONY: bench-recs
bench-recs: install ## Retrieval index: recall@10 vs brute force, queries/s per core, index size at 10k and 100k items
	$(PY) -m bench.bench_recs

.PHONY: bench-autoscale
bench-autoscale: install models ## Autoscaling: our policy vs KEDA+HPA and Numaflow (simulated), then a burst on the local stack
	$(PY) -m bench.bench_autoscale

.PHONY: bench-training
bench-training: install models ## Online learner vs frozen vs popularity on a drifting stream, trainer rate, tagging macro-F1 (BBC News)
	$(PY) -m bench.bench_training

.PHONY: bench-workers
bench-workers: install models ## Triton alone vs Pulsar -> worker -> Triton -> Pulsar vs a naive consumer (medians, ratios)
	$(PY) -m bench.bench_workers

.PHONY: bench-operator
bench-operator: install ## Control plane: operator with 50/200/500 Pipelines on the local stack (Ready s, RSS, idle CPU, admin calls, edit latency)
	$(PY) -m bench.bench_operator

##@ Demo

.PHONY: demo
demo: install system-deps models ## The main job: local stack + operator + sample pipeline + content items, with a summary
	$(PY) -m streamvane_demo

.PHONY: demo-recs
demo-recs: install system-deps models ## Recommendations: content + recommendation samples over news articles, simulated users engaging round by round until the online trainer's versions serve them (ARGS="--users 8 --articles 20")
	$(PY) -m streamvane_demo.recs $(ARGS)

.PHONY: demo-regions
demo-regions: install system-deps models ## One Pipeline in three regions: waves, bake, a bad revision caught and rolled back (multi-region stack)
	STREAMVANE_REGIONS=$${STREAMVANE_REGIONS:-3} $(PY) -m streamvane_demo.regions
