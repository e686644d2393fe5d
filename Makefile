SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

##@ General
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

setup: ## Install system packages, the Python venv and the local cluster toolchain (idempotent)
	bash hack/setup.sh

##@ Main job
demo: setup ## Run the end-to-end demo on its own local cluster (DEMO_KEEP=1 leaves it running)
	bash hack/demo.sh

demo-down: ## Stop everything the demo started (pid files in .demo/pids)
	bash hack/demo-down.sh

##@ Development
test: setup ## Run every test: unit, contract, integration and end to end on a real local cluster
	bash hack/run-tests.sh

test-unit: ## Run the tests that need no cluster
	bash hack/run-tests.sh -m "not cluster and not e2e and not kind"

lint: ## ruff and mypy
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: ## Benchmarks (prints ratios measured in one run)
	$(PY) bench/bench_encoder.py

##@ Local cluster
cluster-up: ## Start the local control plane (etcd, apiserver, controller-manager, scheduler, kwok)
	bash hack/cluster-up.sh

cluster-down: ## Stop the local control plane started by cluster-up
	bash hack/cluster-down.sh

.PHONY: help setup demo demo-down test test-unit lint bench cluster-up cluster-down
