"""The Databricks path of Mechanism Y, for real against a local stand-in of the Jobs API.

`pytest -k databricks` selects every test here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from airflow_support import (
    ROOT,
    SECRET_PASSWORD,
    STANDIN_TOKEN,
    airflow_env,
    dags_test_cmd,
    detection_keys,
    read_detections,
    reference_keys,
    start,
)

from txnwatch.orchestration.databricks import build_submit_payload, idempotency_token
from txnwatch.orchestration.settings import DatabricksConfig, databricks_config

pytest_plugins = ["airflow_fixtures"]


def test_databricks_idempotency_token_is_stable_and_short():
    a = idempotency_token("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00", "run_detect_databricks")
    assert a == idempotency_token("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00",
                                  "run_detect_databricks")
    assert len(a) <= 64
    assert a != idempotency_token("mechanism_y_detect", "manual__2025-07-05T12:00:00+00:00",
                                  "run_detect_databricks")
    assert a != idempotency_token("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00", "other")
    long_run_id = "manual__" + "x" * 500
    assert len(idempotency_token("d" * 250, long_run_id, "t" * 250)) <= 64


def test_databricks_payload_has_secret_references_only(monkeypatch):
    monkeypatch.setenv("TXNWATCH_DATABRICKS_AWS_KEY_ID_SECRET", "aws_key_id")
    monkeypatch.setenv("TXNWATCH_DATABRICKS_AWS_SECRET_SECRET", "aws_secret")
    monkeypatch.setenv("TXNWATCH_DATABRICKS_NUM_WORKERS", "2")
    cfg = databricks_config()
    payload = build_submit_payload(cfg=cfg, landing="s3://bank/landing", output="s3://bank/output",
                                   schema="txnwatch", token="t" * 64, run_name="r",
                                   thresholds={"child_min_txns": 80})
    task = payload["spark_python_task"]
    assert task["python_file"].endswith("detect_job.py")
    assert task["parameters"][:6] == ["--landing", "s3://bank/landing", "--output", "s3://bank/output",
                                      "--schema", "txnwatch"]
    assert "--until-end" in task["parameters"] and "child_min_txns=80" in task["parameters"]
    assert payload["libraries"][0] == {"whl": cfg.wheel} and cfg.wheel.endswith(".whl")
    assert {"pypi": {"package": "psycopg[binary]==3.3.9"}} in payload["libraries"]
    assert payload["timeout_seconds"] > 0 and payload["idempotency_token"] == "t" * 64
    env = payload["new_cluster"]["spark_env_vars"]
    assert env["TXNWATCH_DB_URL"] == "{{secrets/txnwatch/db_url}}"
    assert env["AWS_SECRET_ACCESS_KEY"] == "{{secrets/txnwatch/aws_secret}}"
    assert payload["new_cluster"]["num_workers"] == 2
    text = json.dumps(payload)
    assert "postgresql://" not in text and "--db" not in text and "password" not in text.lower()


def test_databricks_payload_existing_cluster(monkeypatch):
    monkeypatch.setenv("TXNWATCH_DATABRICKS_CLUSTER_ID", "0704-120000-abcd")
    payload = build_submit_payload(cfg=databricks_config(), landing="s3://b/l", output="s3://b/o",
                                   schema="s", token="x", run_name="r")
    assert payload["existing_cluster_id"] == "0704-120000-abcd" and "new_cluster" not in payload


def test_databricks_config_from_airflow_variables(monkeypatch):
    monkeypatch.delenv("TXNWATCH_DATABRICKS_WHEEL", raising=False)
    variables = {"txnwatch_databricks_wheel": "dbfs:/w.whl"}
    cfg = databricks_config(lambda name, default: variables.get(name, default))
    assert cfg.wheel == "dbfs:/w.whl"
    assert DatabricksConfig().secret_scope == "txnwatch"


def _land(dataset, landing, pg_server_url, schema, rows_per_chunk=5000):
    from txnwatch.ingest import run_ingest

    summary = run_ingest(dataset["source"], dataset["importance"], str(landing), pg_server_url,
                         schema=schema, rows_per_chunk=rows_per_chunk, interval=0)
    assert summary.finished


@pytest.fixture
def two_schemas(pg_server_url):
    import uuid

    from txnwatch.db import connect

    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield names
    with connect(pg_server_url, autocommit=True) as conn:
        for n in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {n} CASCADE")


@pytest.mark.slow
def test_databricks_dags_test_runs_the_job_on_the_standin(airflow_local, databricks_standin, small_dataset,
                                                          pg_server_url, tmp_path, two_schemas):
    standin, db_env = databricks_standin
    schema = two_schemas[0]
    landing, output = tmp_path / "landing", tmp_path / "output"
    _land(small_dataset, landing, pg_server_url, schema)
    conf = {"landing": str(landing), "output": str(output), "runner": "databricks", "schema": schema,
            "until_end": True, "thresholds": small_dataset["thresholds"]}
    # Deferrable mode: the run is watched by the provider's trigger (run inline by `dags test`).
    env = airflow_env(airflow_local, pg_server_url, **db_env, TXNWATCH_DATABRICKS_DEFERRABLE="1")
    log = tmp_path / "dags_test.log"
    t0 = time.monotonic()
    proc = start(dags_test_cmd(airflow_local, "mechanism_y_detect", conf), env, log)
    proc.wait(480)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-5000:]
    print(f"dags test (databricks runner) took {time.monotonic() - t0:.1f}s")

    submits = [body for method, path, body in standin.calls if path.endswith("/jobs/runs/submit")]
    assert len(submits) == 1
    payload = submits[0]
    assert payload["spark_python_task"]["python_file"] == "dbfs:/txnwatch/spark_jobs/detect_job.py"
    assert payload["libraries"][0]["whl"].endswith(".whl")
    assert payload["new_cluster"]["spark_env_vars"]["TXNWATCH_DB_URL"] == "{{secrets/txnwatch/db_url}}"
    assert len(payload["idempotency_token"]) <= 64
    assert all(r.result_state == "SUCCESS" for r in standin.runs.values())
    # No secret anywhere: not in the submitted payload, not in the task logs.
    assert SECRET_PASSWORD not in json.dumps(payload)
    assert SECRET_PASSWORD not in text and STANDIN_TOKEN not in text
    for f in airflow_local.home.joinpath("logs").rglob("*"):
        if f.is_file():
            body = f.read_text(errors="replace")
            assert SECRET_PASSWORD not in body and STANDIN_TOKEN not in body, f

    got = detection_keys(read_detections(output))
    assert got, "no detections: thresholds too high for the small data set?"
    assert got == reference_keys(landing, small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}


def _probe(la, pg_server_url, db_env, mode: str, payload: dict) -> dict:
    env = airflow_env(la, pg_server_url, **db_env)
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "airflow_databricks_probe.py"), mode,
                          json.dumps(payload)], env=env, capture_output=True, text=True, timeout=400)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT:")), None)
    assert line, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(line[len("RESULT:"):])


def _payload(landing, output, schema, **cfg_overrides) -> dict:
    cfg = DatabricksConfig(**cfg_overrides)
    return build_submit_payload(cfg=cfg, landing=str(landing), output=str(output), schema=schema,
                                token=idempotency_token("d", str(time.time()), "t"), run_name="probe")


def test_databricks_failing_run_fails_the_task(airflow_local, databricks_standin, pg_server_url, tmp_path,
                                               schema):
    standin, db_env = databricks_standin
    # The entry script does not exist on the "workspace": the run terminates FAILED.
    payload = _payload(tmp_path / "l", tmp_path / "o", schema, entry_script="dbfs:/txnwatch/missing_job.py")
    result = _probe(airflow_local, pg_server_url, db_env, "fail", payload)
    assert result["outcome"] == "failed", result
    assert "FAILED" in result["error"]
    assert any(p.endswith("/jobs/runs/get") for _, p, _ in standin.calls)


def test_databricks_killed_task_cancels_the_run(airflow_local, databricks_standin, pg_server_url, tmp_path,
                                                schema):
    standin, db_env = databricks_standin
    # An empty landing zone and no --until-end end: the job runs until it is cancelled.
    payload = _payload(tmp_path / "landing", tmp_path / "output", schema)
    payload["spark_python_task"]["parameters"].remove("--until-end")
    result = _probe(airflow_local, pg_server_url, db_env, "kill", payload)
    assert result["state_before_kill"] == "RUNNING", result
    assert any(p.endswith("/jobs/runs/cancel") for _, p, _ in standin.calls), standin.endpoints_called()
    run = standin.runs[result["run_id"]]
    assert run.result_state == "CANCELED"
    assert run.proc is not None and run.proc.poll() is not None  # the Spark job is gone
    assert result["outcome"] == "failed"
