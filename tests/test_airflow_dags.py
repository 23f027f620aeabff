"""`airflow dags test` of both DAGs at the same time, on a small generated set: both runs succeed and
the detections equal the reference implementation's."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest
from airflow_support import (
    airflow_env,
    dags_test_cmd,
    detection_keys,
    read_detections,
    reference_keys,
    start,
)

pytest_plugins = ["airflow_fixtures"]


@pytest.fixture
def fresh_schema(pg_server_url):
    from txnwatch.db import connect

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.slow
def test_airflow_dags_test_both_dags_concurrently(airflow_local, small_dataset, pg_server_url, tmp_path,
                                                  fresh_schema):
    landing, output = tmp_path / "landing", tmp_path / "output"
    conf_x = {"source": small_dataset["source"], "importance": small_dataset["importance"],
              "landing": str(landing), "rows_per_chunk": 5000, "interval_seconds": 0.2,
              "schema": fresh_schema}
    conf_y = {"landing": str(landing), "output": str(output), "runner": "local", "until_end": True,
              "schema": fresh_schema, "thresholds": small_dataset["thresholds"]}
    env = airflow_env(airflow_local, pg_server_url)
    t0 = time.monotonic()
    y = start(dags_test_cmd(airflow_local, "mechanism_y_detect", conf_y), env, tmp_path / "y.log")
    # X through the project's CLI wrapper, as a user would: `txnwatch airflow dags test ...`.
    x_env = dict(env, TXNWATCH_AIRFLOW_HOME=str(airflow_local.home),
                 TXNWATCH_AIRFLOW_DB=airflow_local.metadata_url.rsplit("/", 1)[1],
                 TXNWATCH_AIRFLOW_PORT=str(airflow_local.api_port), TXNWATCH_DB_URL=pg_server_url)
    x_cmd = [str(Path(sys.executable).parent / "txnwatch"), "airflow",
             *dags_test_cmd(airflow_local, "mechanism_x_ingest", conf_x)[1:]]
    x = start(x_cmd, x_env, tmp_path / "x.log")
    try:
        x.wait(300)
        y.wait(420)
    finally:
        for p in (x, y):
            if p.poll() is None:
                p.kill()
    print(f"both dags tests took {time.monotonic() - t0:.1f}s")
    assert x.returncode == 0, (tmp_path / "x.log").read_text(errors="replace")[-5000:]
    assert y.returncode == 0, (tmp_path / "y.log").read_text(errors="replace")[-5000:]
    x_log = (tmp_path / "x.log").read_text(errors="replace")
    assert "produce_chunks" in x_log and (landing / "_END.json").exists()
    assert "chunks processed" in (tmp_path / "y.log").read_text(errors="replace")  # the report task's summary

    got = detection_keys(read_detections(output))
    assert got == reference_keys(landing, small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}
