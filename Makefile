# Two commands matter: `make demo` runs the pipeline, `make test` runs the suite.
# Both bootstrap .venv from requirements.txt when it is missing or stale.
SHELL := /bin/bash
# The first interpreter that actually runs and is 3.11+ (a pyenv shim may exist without its version).
ifeq ($(origin PY),undefined)
PY := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The runtime-matched environment: Y's tests on the library versions of Databricks Runtime 17.3 LTS.
DBR_VENV := .venv-dbr
DBR_BIN := $(DBR_VENV)/bin
DBR_STAMP := $(DBR_VENV)/.installed

.PHONY: venv venv-dbr spark-cds test test-dbr test-connect demo lint bench wheel clean

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -n "$(PY)" || { echo "Python 3.11+ is required (set PY=/path/to/python3)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt -c constraints.txt
	$(BIN)/pip install --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

$(DBR_STAMP): requirements-dbr.txt constraints-dbr.txt pyproject.toml
	@test -n "$(PY)" || { echo "Python 3.11+ is required (set PY=/path/to/python3)"; exit 1; }
	@test -x $(DBR_BIN)/python || $(PY) -m venv $(DBR_VENV)
	$(DBR_BIN)/pip install -r requirements-dbr.txt -c constraints-dbr.txt
	$(DBR_BIN)/pip install --no-deps -e .
	@touch $(DBR_STAMP)

venv-dbr: $(DBR_STAMP)

# The driver JVM's class data sharing archive (txnwatch/detect/jvm_startup.py): built once, under .local/.
spark-cds: $(STAMP)
	@SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m txnwatch.detect.jvm_startup

# Y's reference, restart and kill tests once more as a Spark Connect client (Databricks serverless and
# standard access mode run the job that way).
CONNECT_TESTS := tests/test_detect_e2e.py tests/test_detect_generated.py tests/test_detect_kill.py \
	tests/test_detect_properties.py tests/test_detect_rules.py

test: spark-cds $(DBR_STAMP)
	$(BIN)/ruff check .
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m pytest
	SPARK_LOCAL_IP=127.0.0.1 $(DBR_BIN)/python -m pytest -k detect
	SPARK_LOCAL_IP=127.0.0.1 SPARK_REMOTE="local[2]" $(BIN)/python -m pytest $(CONNECT_TESTS)

# The Connect variant alone.
test-connect: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 SPARK_REMOTE="local[2]" $(BIN)/python -m pytest $(CONNECT_TESTS)

# Y's tests (rules, reference comparisons, kill tests) on Databricks Runtime 17.3 LTS's pyspark, pyarrow,
# pandas and numpy (requirements-dbr.txt): an API newer than the runtime's fails here.
test-dbr: $(DBR_STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(DBR_BIN)/python -m pytest -k detect

demo: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m txnwatch.local.demo

lint: $(STAMP)
	$(BIN)/ruff check .

# Every figure at 1×, 10× and 100× the customers (≈20 min on 2 cores); BENCH_ARGS picks, e.g.
# `make bench BENCH_ARGS="--scales 100"` or `BENCH_ARGS=--quick` (a smoke run on tiny data). See docs/benchmarks.md.
bench: spark-cds
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m tools.bench $(BENCH_ARGS)

# The wheel shipped to Databricks as the job's library (`txnwatch databricks deploy` builds and uploads it).
wheel: $(STAMP)
	rm -rf build dist
	$(BIN)/txnwatch databricks build --out dist

clean:
	rm -rf build dist .local .pytest_cache

# --- Airflow (issue 4) -------------------------------------------------------------------------
.PHONY: airflow-migrate airflow-up test-airflow test-browser compose-env compose-up compose-down

# Metadata database of the local Airflow (`txnwatch airflow ...` uses the same configuration). Optional:
# `txnwatch airflow <anything>`, `make airflow-up` and `make demo` migrate it on first use themselves.
airflow-migrate: $(STAMP)
	$(BIN)/txnwatch airflow db migrate
	$(BIN)/txnwatch airflow dags reserialize

# The local Airflow in the foreground (UI at http://127.0.0.1:8080) until Ctrl-C, SIGTERM or SIGHUP, each of
# which stops every process it started.
airflow-up: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m txnwatch.local.stack

# The Airflow tests only (DagBag, Databricks stand-in, dags test, end-to-end through the REST API, the UI and
# the live view in a real browser).
test-airflow: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m pytest tests/test_dag_integrity.py tests/test_compose.py \
		tests/test_databricks.py tests/test_airflow_dags.py tests/test_airflow_e2e.py tests/test_airflow_local.py \
		tests/test_airflow_signals.py tests/test_browser_ui.py tests/test_live_view.py tests/test_live_view_browser.py \
		tests/test_rest_api_client.py

# The real-browser tests: the Airflow UI and the live view (Debian's chromium: `apt-get install -y chromium`);
# screenshots in .local/ui/.
test-browser: $(STAMP)
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m pytest -k browser

COMPOSE_ENV := .local/compose.env

compose-env: $(STAMP)
	$(BIN)/python -m txnwatch.local.compose $(COMPOSE_ENV)

compose-up: compose-env
	mkdir -p .local/compose/logs .local/compose/config .local/compose/data/data
	docker compose --env-file $(COMPOSE_ENV) up -d --build

compose-down:
	docker compose --env-file $(COMPOSE_ENV) down
