# Quick start: `make demo` (embedded broker + worker + simulator) and `make test`.
# Each target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DURATION ?= 90
RATE ?= 200

.PHONY: demo test unit integration lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/ioc demo --duration $(DURATION) --rate $(RATE)

test: $(BIN)/.installed
	$(BIN)/python -m pytest

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not integration"

integration: $(BIN)/.installed
	$(BIN)/python -m pytest -m integration

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .ioc-data .pytest_cache .mypy_cache .ruff_cache
