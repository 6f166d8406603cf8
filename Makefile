# skycore-async developer commands. Everything runs inside ./.venv, created on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint typecheck check bench bench-smoke emulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: a bulk campaign against the embedded emulator, with progress and a results file
demo: $(STAMP)
	$(BIN)/python examples/demo.py --out demo-out

## test: the test suite (talks only to 127.0.0.1)
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## bench: every benchmark, one combined table (a few minutes; never part of `make test`)
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py

## bench-smoke: every benchmark in smoke mode (seconds; CI runs this so they cannot rot)
bench-smoke: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py --smoke

## emulator: run the local Skycore emulator on port 8080
emulator: $(STAMP)
	$(BIN)/skycore-async emulator --port 8080

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache
