# Two commands for a fresh machine: `make run` and `make test`. Each sets up .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kronos-bot-installed
PYTEST_ARGS ?=

.PHONY: setup run test check bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh

setup: $(STAMP)

## run the trader (dry-run with the simulated broker when no Alpaca keys are set)
run: $(STAMP)
	$(VENV)/bin/kronos-bot run

## run the whole test suite
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## validate config/bot.yaml (+ environment)
check: $(STAMP)
	$(VENV)/bin/kronos-bot config check

bench: $(STAMP)
	$(PY) scripts/bench_forecast.py --samples 1
	$(PY) scripts/bench_forecast.py --samples 32

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
