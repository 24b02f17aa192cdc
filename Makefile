# Two commands after cloning: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint demo validate bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The bot on its embedded defaults: ./runbooks, TinyDB in ./.runbook, port 3000,
# fake vendor APIs on loopback for every connector without credentials.
run: $(STAMP)
	$(BIN)/runbook serve --sandbox

# The whole test suite (what CI runs), after lint and type checks.
test: $(STAMP)
	$(BIN)/ruff check bot connectors tests bench examples
	$(BIN)/ruff format --check bot connectors tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check bot connectors tests bench examples
	$(BIN)/ruff format --check bot connectors tests bench examples
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/runbook demo

validate: $(STAMP)
	$(BIN)/runbook validate runbooks/

bench: $(STAMP)
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/slack.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
