# Two commands for a fresh machine: `make run` and `make test`. Each sets up .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kronos-bot-installed
PYTEST_ARGS ?=

.PHONY: setup run test lint check bench demo clean

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

## a backtest of the shipped sample bars with the tiny TEST model (random weights): a report in about a minute
DEMO_OUT ?= var/demo
demo: $(STAMP)
	@echo "demo: backtest of tests/fixtures/bars (BTC ETH SOL DOGE, 2024-12-17 .. 2024-12-31, 360 h) with the tiny test model."
	@echo "      Its weights are RANDOM: the trades and numbers below mean nothing about Kronos."
	$(VENV)/bin/kronos-bot backtest --data tests/fixtures/bars --symbols BTC ETH SOL DOGE --from 2024-12-17 \
		--model tests/fixtures/kronos_tiny/model --tokenizer tests/fixtures/kronos_tiny/tokenizer --no-verify \
		--samples 16 --threads 2 --out $(DEMO_OUT) --cache-dir $(DEMO_OUT)/cache
	@echo ""
	@echo "demo report: $(abspath $(DEMO_OUT))/report.html (open it in a browser)"
	@echo "Reminder: the tiny test model has random weights; these numbers say nothing about Kronos."
	@echo "For real numbers: kronos-bot download-model, then kronos-bot backtest (README, Backtest and forecast evaluation)."

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
