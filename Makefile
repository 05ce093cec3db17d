# meingym-tasks: every command a developer or CI needs, each creating the venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint format worker bench bench-smoke clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## demo: migrate, seed, run both consumers on the embedded SQLite default and run every job once
demo: $(BIN)/.installed
	$(BIN)/meingym-tasks demo

## test: the whole test suite (Redis and PostgreSQL tests skip when those are not running)
test: $(BIN)/.installed
	$(BIN)/pytest

## lint: ruff (lint and format check) and mypy on the package
lint: $(BIN)/.installed
	$(BIN)/ruff check meingym_tasks tests bench
	$(BIN)/ruff format --check meingym_tasks tests bench
	$(BIN)/mypy meingym_tasks

format: $(BIN)/.installed
	$(BIN)/ruff check --fix meingym_tasks tests
	$(BIN)/ruff format meingym_tasks tests

## worker: both consumers in the foreground (Ctrl-C stops them gracefully)
worker: $(BIN)/.installed
	$(BIN)/meingym-tasks worker all

## bench: the benchmarks at full size against local Redis and PostgreSQL (long; sizes: MEINGYM_BENCH_*);
## prints the tables, writes bench/results/ and the results block of docs/performance.md
bench: $(BIN)/.installed
	$(BIN)/python -m bench --update-docs

## bench-smoke: the benchmarks at tiny sizes (what CI runs through tests/test_bench_smoke.py)
bench-smoke: $(BIN)/.installed
	$(BIN)/python -m bench --smoke

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
