# Two commands for a fresh machine: `make run` and `make test`. Each sets up .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kronos-bot-installed
PYTEST_ARGS ?=

.PHONY: setup run test lint check bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

setup: $(STAMP)

## run the trader (dry-run with the simulated broker when no Alpaca keys are set)
run: $(STAMP)
	$(VENV)/bin/kronos-bot run

## lint (ruff), formatting (ruff format --check) and types (mypy): the first half of `make test`
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts
	$(VENV)/bin/mypy

## run the whole test suite (what CI runs): lint, formatting and types first, then pytest
test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

## validate config/bot.yaml (+ environment)
check: $(STAMP)
	$(VENV)/bin/kronos-bot config check

bench: $(STAMP)
	$(PY) scripts/bench_forecast.py --samples 1
	$(PY) scripts/bench_forecast.py --samples 32

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
