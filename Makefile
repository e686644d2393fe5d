SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

##@ General
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

setup: ## Install system packages, the Python venv and the local cluster toolchain (idempotent)
	bash hack/setup.sh

##@ Main job
demo: setup ## The end-to-end demo on its own kind cluster, real pods (DEMO_KEEP=1 keeps it; SAM_DEMO_KWOK=1: simulated)
	bash hack/demo.sh

demo-down: ## Stop everything the demo started (pid files in .demo/pids)
	bash hack/demo-down.sh

##@ Development
test: setup lint ## Lint first, then every test: unit, contract, integration and e2e on a real API server, real pods on kind
	bash hack/run-tests.sh

test-unit: ## Run the tests that need no cluster
	bash hack/run-tests.sh -m "not cluster and not e2e and not kind"

lint: ## ruff check, ruff format --check, mypy --strict and the import contracts (.importlinter); pre-commit runs the same
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache

bench: ## Benchmarks (prints ratios measured in one run)
	$(PY) bench/bench_encoder.py

##@ Real containers (kind, podman; offline)
images: ## Build the operator and encoder images (podman, Debian-made base, tagged by content hash)
	bash hack/build-images.sh

kind-up: ## Create a kind cluster (real pods, kwok GPU nodes beside) with the images loaded (SAM_KIND_CLUSTER=sam-kind)
	bash hack/kind-up.sh

kind-down: ## Delete that kind cluster and undo its host changes (SAM_KIND_REMOVE_IMAGES=1 also drops the images)
	bash hack/kind-down.sh

test-kind: ## Run only the real-pods suite (tests/kind) on its own kind cluster
	bash hack/run-tests.sh tests/kind

##@ Simulated cluster (kwok: fast, GPU scheduling)
cluster-up: ## Start the local control plane (etcd, apiserver, controller-manager, scheduler, kwok)
	bash hack/cluster-up.sh

cluster-down: ## Stop the local control plane started by cluster-up
	bash hack/cluster-down.sh

.PHONY: help setup demo demo-down test test-unit test-kind lint bench images kind-up kind-down cluster-up cluster-down
