# Quick start: `make demo` (embedded broker + worker + simulator) and `make test`.
# Each target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DURATION ?= 90
RATE ?= 200
BACKFILL ?= 26h
# SINKS=1: the demo also runs a local VictoriaMetrics and Alertmanager (make system-deps).
SINKS ?=

.PHONY: demo test unit integration lint clean system-deps

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/ioc demo --duration $(DURATION) --rate $(RATE) --backfill $(BACKFILL) \
	  $(if $(filter 1 yes true,$(SINKS)),--with-sinks)

# Apache Kafka for the integration tests runs on the JDK; its jars come from Maven
# Central (fetched on first use into ~/.cache/ioc-streams, never into the repo).
# kcat is the plain, non-Python Kafka client a test produces a malformed message with;
# VictoriaMetrics and Alertmanager are the real servers the sink tests write to;
# Chromium is the browser the console's tests drive (Playwright, with this binary: no
# browser download).
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null && command -v kcat >/dev/null \
	  && command -v victoria-metrics >/dev/null && command -v prometheus-alertmanager >/dev/null \
	  && command -v chromium >/dev/null || { \
	  echo "installing a JDK, Maven, kcat, VictoriaMetrics, Alertmanager and Chromium (Debian packages)"; \
	  apt-get update -q && apt-get install -y -q default-jdk-headless maven kcat \
	    victoria-metrics prometheus-alertmanager chromium; }

test: $(BIN)/.installed system-deps
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not integration"

integration: $(BIN)/.installed system-deps
	$(BIN)/python -m pytest -m integration

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .ioc-data .pytest_cache .mypy_cache .ruff_cache
