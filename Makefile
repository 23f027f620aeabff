# Two commands matter: `make demo` runs the pipeline, `make test` runs the suite.
# Both bootstrap .venv from requirements.txt when it is missing or stale.
SHELL := /bin/bash
PY ?= $(shell command -v python3.13 || command -v python3.12 || command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo lint bench wheel clean

$(STAMP): requirements.txt pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade-strategy only-if-needed -r requirements.txt
	$(BIN)/pip install --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m pytest

demo: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m txnwatch.demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m txnwatch.bench

# The wheel shipped to Databricks as the job's library.
wheel: $(STAMP)
	rm -rf build dist
	$(BIN)/pip wheel --no-deps -w dist .

clean:
	rm -rf build dist .local .pytest_cache
