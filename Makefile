# polybus: every install step lives here, so a fresh machine needs only Python 3.10+,
# Java 17 and Maven (for the Kafka broker the tests start). See README.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: help demo test lint typecheck unit bench reliability docs kafka-up kafka-down kafka-fetch clean

help:
	@echo "make demo        run 'bus demo' on the in-memory backend (creates .venv)"
	@echo "make test        lint, type-check and run every test (starts Kafka itself)"
	@echo "make bench       run the benchmarks, write bench/results/latest.json"
	@echo "make reliability run the fault scenarios on real brokers, write bench/results/reliability.json"
	@echo "make docs        build the user docs with mkdocs --strict"
	@echo "make kafka-up    start one local Kafka broker, print its bootstrap address"
	@echo "make kafka-down  stop it"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[dev]'
	@touch $@

# The sqlite:// backend is a distribution of its own (as a third party ships one):
# installed beside polybus, tested with its own suite.
SQLITE := plugins/polybus-sqlite
$(VENV)/.sqlite: $(SQLITE)/pyproject.toml $(VENV)/.dev
	$(PIP) install -q -e $(SQLITE)
	@touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.dev $(VENV)/.sqlite
	$(PIP) install -q -e '.[dev,bench]'
	@touch $@

$(VENV)/.docs: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[docs]'
	@touch $@

demo: $(VENV)/.base
	$(BIN)/bus demo

lint: $(VENV)/.dev $(VENV)/.sqlite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	cd $(SQLITE) && ../../$(BIN)/lint-imports --config pyproject.toml

typecheck: $(VENV)/.dev $(VENV)/.sqlite
	$(BIN)/mypy
	cd $(SQLITE) && ../../$(BIN)/mypy

unit: $(VENV)/.dev $(VENV)/.sqlite
	$(BIN)/pytest
	cd $(SQLITE) && ../../$(BIN)/pytest tests -q

test: lint typecheck unit

bench: $(VENV)/.bench
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.kafka
	$(BIN)/python -m bench.aiokafka
	$(BIN)/python -m bench.worker
	$(BIN)/python -m bench.sqlite

reliability: $(VENV)/.dev
	$(BIN)/python -m tools.faults --rounds 3

docs: $(VENV)/.docs
	$(BIN)/mkdocs build --strict -d site

kafka-fetch: $(VENV)/.base
	$(BIN)/python -m tools.kafka_harness fetch

kafka-up: $(VENV)/.base
	@$(BIN)/python -m tools.kafka_harness up

kafka-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.kafka_harness down; fi

clean: kafka-down
	rm -rf $(VENV) .cache site build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
