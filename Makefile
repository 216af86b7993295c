# Two commands on a fresh Debian machine: `make up` runs the platform, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test unit test-faults cluster-test k8s-test console-test console deps venv lint typecheck bench clean

up: deps venv  ## run NATS, the registry, dockerd (if none runs), every service and one agent
	$(BIN)/tingyu up

test: deps venv lint typecheck  ## lint, types, then unit, integration and end-to-end tests against real parts, with coverage
	$(BIN)/pytest -q --cov --cov-report=term -m "not faults and not cluster and not kubernetes" tests

unit: venv  ## the unit tests alone: nothing running, a few seconds
	$(BIN)/pytest -q -m unit tests

DOCKERD_KILLED := tests/integration/cli/test_dockerd_restart.py

test-faults: deps venv  ## the slow fault tests: timeouts, killed leaders, replicas, dead NATS
	$(BIN)/pytest -q -m faults $(DOCKERD_KILLED)  # first, alone: it kills the dockerd it starts
	$(BIN)/pytest -q -m faults --deselect $(DOCKERD_KILLED) tests

console-test: deps venv  ## only the console's browser tests (also part of `make test`); screenshots in var/screenshots
	$(BIN)/pytest -q -m console tests/console

console:  ## build the web console (console/dist) from its lockfile
	cd console && npm ci --no-audit --no-fund && npm run build

cluster-test: deps venv  ## three clustered nats-servers, two replicas of every service, kills under load
	$(BIN)/pytest -q -m cluster --timeout=900 tests/cluster

k8s-test: deps venv  ## the Kubernetes runtime against a real kube-apiserver (built once, cached outside the tree)
	bash deploy/kubernetes/build-apiserver.sh
	$(BIN)/pytest -q -m kubernetes --timeout=600 tests/kubernetes

deps:  ## Debian packages the platform runs on (installed only when missing)
	@bash deploy/local/install-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,k8s]'  # the Kubernetes client too: types are checked with it
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy libs services tools bench

bench: deps venv  ## benchmarks print ratios against a baseline measured in the same run
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
