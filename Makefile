# Two commands after cloning: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint demo validate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/runbook validate runbooks/ && $(BIN)/runbook list

test: $(STAMP)
	$(BIN)/ruff check bot connectors tests bench
	$(BIN)/ruff format --check bot connectors tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

validate: $(STAMP)
	$(BIN)/runbook validate runbooks/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
