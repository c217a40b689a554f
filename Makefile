# One entry point per thing a user does. Every target sets up what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: help install install-dev install-infra run demo simulate test lint static bench synth clean

help:
	@echo "make run        stream everything marketpipe.toml enables (as shipped: Bitfinex, Bitso, Binance,"
	@echo "                execution prices) live into ./data (CSV, SQLite, Parquet lake, raw capture)"
	@echo "make demo       the same, offline, from the built-in simulators, for 60 s"
	@echo "make test       set everything up (incl. a local MariaDB) and run the whole test suite"
	@echo "make lint       ruff + mypy + the layering contracts (also run first by make test)"
	@echo "make bench      run the benchmarks and update docs/PERFORMANCE.md"
	@echo "make synth      synthesize the AWS CDK app (no AWS account or Docker needed)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,infra]"

install-infra: install-dev
	npm ci --no-audit --no-fund --loglevel=error

# Both read ./marketpipe.toml (every capability on); `marketpipe config` shows what they will do.
run: install
	$(BIN)/marketpipe run

demo: install
	$(BIN)/marketpipe run --simulate --duration 60

simulate: install
	$(BIN)/marketpipe simulate

test: install-dev
	$(MAKE) --no-print-directory static
	bash scripts/install-mariadb.sh
	$(BIN)/pytest -p no:cacheprovider --cov=marketpipe --cov-report=term-missing:skip-covered --cov-fail-under=90 $(PYTEST_ARGS)

lint: install-dev
	$(MAKE) --no-print-directory static

# The static checks `make test` (and so CI) runs first: lint, format, types of layers/, infra/, functions/,
# and the layering contracts in pyproject.toml (import-linter).
static:
	$(BIN)/ruff check layers tests infra functions benchmarks
	$(BIN)/ruff format --check layers tests infra functions benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install-dev
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py

synth: install-infra
	npx cdk synth --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache .coverage
