# sam3-pipeline: `make run` (the whole pipeline on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast lint format bench clean

install: $(STAMP)

# Idempotent: the venv is created once and re-synced only when the pins change.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]' 2>&1 \
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
	$(BIN)/ruff check pipeline components tests benchmarks
	$(BIN)/ruff format --check pipeline components tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix pipeline components tests benchmarks
	$(BIN)/ruff format pipeline components tests benchmarks

bench: install
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf .sam3 .pytest_cache .mypy_cache .ruff_cache
