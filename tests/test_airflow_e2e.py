"""End to end through real Airflow services: API server, scheduler, DAG processor and triggerer in one
process group; Y triggered through the REST API v2 as the UI does, X once Y's readiness mark is set; both
runs succeed; the detections equal the reference implementation's; every process is gone afterwards."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from tests.airflow_support import SECRET_PASSWORD, airflow_env, detection_keys, read_detections, reference_keys

pytest_plugins = ["tests.airflow_fixtures"]


@pytest.mark.slow
def test_airflow_e2e_rest_api_triggers_both_dags(airflow_local, small_dataset, pg_server_url, tmp_path,
                                                 schema):
    from txnwatch.airflow.airflow_api import AirflowAPI
    from txnwatch.local.airflow_home import ADMIN_USER
    from txnwatch.local.demo import run_pipeline, y_ready_check
    from txnwatch.local.stack import AirflowStack, _group_alive

    landing, output = tmp_path / "landing", tmp_path / "output"
    conf_x = {"source": small_dataset["source"], "importance": small_dataset["importance"],
              "landing": str(landing), "rows_per_chunk": 5000, "interval_seconds": 0.2,
              "max_chunks": None, "schema": schema}
    conf_y = {"landing": str(landing), "output": str(output), "runner": "local", "until_end": True,
              "schema": schema, "thresholds": small_dataset["thresholds"]}
    # postgres_default with a password (ignored by trust auth) that must not show up in any log.
    la = dataclasses.replace(airflow_local, env=airflow_env(airflow_local, pg_server_url))
    stack = AirflowStack(la, tmp_path / "services")
    t0 = time.monotonic()
    stack.start()
    try:
        api = AirflowAPI(la.api_url, ADMIN_USER, la.admin_password())
        api.wait_ready(["mechanism_x_ingest", "mechanism_y_detect"])
        stack.wait_spark()
        ready = time.monotonic() - t0
        result = run_pipeline(api, conf_x, conf_y, y_ready_check(pg_server_url, schema), timeout=600)
        print(f"services ready in {ready:.1f}s, Y ready after {result.y_ready_s}s, both DAG runs in "
              f"{result.seconds:.1f}s")
        if not result.ok:
            for dag_id, run_id in result.run_ids.items():
                print(dag_id, [(t["task_id"], t["state"]) for t in api.task_instances(dag_id, run_id)])
        assert result.ok, result.states
        tis = {t["task_id"]: t["state"] for t in api.task_instances("mechanism_y_detect",
                                                                     result.run_ids["mechanism_y_detect"])}
        assert tis["run_detect_local"] == "success" and tis["report"] == "success"
        assert tis["run_detect_databricks"] == "skipped"
        x_started = api.dag_run("mechanism_x_ingest", result.run_ids["mechanism_x_ingest"])["queued_at"]
    finally:
        pgid = stack.pgid
        stack.stop()
    assert pgid is not None and not _group_alive(pgid), "Airflow processes left behind"

    # X was triggered only once Y's Spark session was warm: the consumer before its producer.
    from datetime import datetime

    from txnwatch.core.db import connect
    from txnwatch.records.readiness import y_readiness

    with connect(pg_server_url) as conn:
        marks = y_readiness(conn, schema)
    assert marks.ready_at is not None and marks.ready_at <= datetime.fromisoformat(x_started)

    got = detection_keys(read_detections(output))
    assert got == reference_keys(landing, small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}
    # Neither the database password nor the standing Spark's token in any service or task log.
    token = la.env["SPARK_CONNECT_AUTHENTICATE_TOKEN"]
    task_logs = list((la.home / "logs").glob("dag_id=*/**/*.log"))
    y_run = result.run_ids["mechanism_y_detect"]
    y_log = next(f for f in task_logs if y_run in str(f) and "task_id=run_detect_local" in str(f)).read_text()
    assert "Y as a Spark Connect client of the standing Spark at sc://localhost:" in y_log  # not spark-submit
    for f in [*(tmp_path / "services").glob("*.log"), *task_logs]:
        text = f.read_text(errors="replace")
        assert SECRET_PASSWORD not in text and token not in text, f.name

    # The Task Execution API was built before the first task reported it was running (wait_ready).
    access_log = (tmp_path / "services" / "api-server.log").read_text()
    execution = re.findall(r"method=(\w+) path=(/execution/\S*)", access_log)
    assert execution[0] == ("GET", "/execution/health")
    assert any(m == "PATCH" and path.endswith("/run") for m, path in execution[1:])
