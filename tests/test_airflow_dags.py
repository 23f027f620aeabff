"""`airflow dags test` of both DAGs at the same time, on a small generated set: both runs succeed and
the detections equal the reference implementation's."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.airflow_support import (
    airflow_env,
    dags_test_cmd,
    detection_keys,
    read_detections,
    reference_keys,
    start,
)
from tests.helpers import wait_for

pytest_plugins = ["tests.airflow_fixtures"]


def _wait_for_both(x, y) -> None:
    """X's and Y's `dags test` processes to end (bounded); either left running is killed."""
    try:
        x.wait(300)
        y.wait(420)
    finally:
        for p in (x, y):
            if p.poll() is None:
                p.kill()


@pytest.mark.slow
def test_airflow_dags_test_both_dags_concurrently(airflow_local, small_dataset, pg_server_url, tmp_path,
                                                  schema):
    landing, output = tmp_path / "landing", tmp_path / "output"
    conf_x = {"source": small_dataset["source"], "importance": small_dataset["importance"],
              "landing": str(landing), "rows_per_chunk": 5000, "interval_seconds": 0.2,
              "schema": schema}
    conf_y = {"landing": str(landing), "output": str(output), "runner": "local", "until_end": True,
              "schema": schema, "thresholds": small_dataset["thresholds"]}
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
    _wait_for_both(x, y)
    print(f"both dags tests took {time.monotonic() - t0:.1f}s")
    assert x.returncode == 0, (tmp_path / "x.log").read_text(errors="replace")[-5000:]
    assert y.returncode == 0, (tmp_path / "y.log").read_text(errors="replace")[-5000:]
    x_log = (tmp_path / "x.log").read_text(errors="replace")
    assert "produce_chunks" in x_log and (landing / "_END.json").exists()
    assert "chunks processed" in (tmp_path / "y.log").read_text(errors="replace")  # the report task's summary

    got = detection_keys(read_detections(output))
    assert got == reference_keys(landing, small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}

    # The same flow triggered again as it was: each DAG fails at once saying what to change, instead of
    # succeeding having done nothing.
    for dag_id, conf, reason in (("mechanism_y_detect", conf_y, f"schema {schema} already finished a replay"),
                                 ("mechanism_x_ingest", conf_x, f"landing zone {landing} already holds a "
                                                                "finished replay")):
        log = tmp_path / f"again_{dag_id}.log"
        again = start(dags_test_cmd(airflow_local, dag_id, conf), env, log)
        again.wait(300)
        text = log.read_text(errors="replace")
        assert reason in text and "start_over" in text, text[-5000:]
        assert "Traceback" not in text.split(reason)[0][-300:]
    # With start_over, Y clears the landing zone, output and schema, and the pair replays afresh.
    y = start(dags_test_cmd(airflow_local, "mechanism_y_detect", {**conf_y, "start_over": True}), env,
              tmp_path / "y2.log")
    # X once Y has cleared (as the UI flow waits for Y before triggering X).
    wait_for(lambda: "start over: deleted" in (tmp_path / "y2.log").read_text(errors="replace"), timeout=240,
             what="Y to start over")
    x = start(x_cmd, x_env, tmp_path / "x2.log")
    _wait_for_both(x, y)
    assert "start over: dropped schema" in (tmp_path / "y2.log").read_text(errors="replace")
    assert x.returncode == 0 and y.returncode == 0, (tmp_path / "y2.log").read_text(errors="replace")[-3000:]
    assert detection_keys(read_detections(output)) == got


@pytest.mark.slow
def test_airflow_x_dag_on_s3_waits_for_the_source(airflow_local, s3_endpoint, s3_bucket, small_dataset,
                                                  pg_server_url, tmp_path, schema):
    """s3:// source and landing: the provider's deferrable S3KeySensor waits for the source object
    (uploaded after the run started), the producer gets its S3 client from aws_default."""
    import json
    import os

    import boto3

    s3 = boto3.client("s3")
    s3.upload_file(small_dataset["importance"], s3_bucket, "in/importance.csv")
    conf_x = {"source": f"s3://{s3_bucket}/in/transactions.csv",
              "importance": f"s3://{s3_bucket}/in/importance.csv",
              "landing": f"s3://{s3_bucket}/landing", "rows_per_chunk": 10_000, "interval_seconds": 0,
              "schema": schema}
    aws = {"conn_type": "aws", "login": os.environ["AWS_ACCESS_KEY_ID"],
           "password": os.environ["AWS_SECRET_ACCESS_KEY"],
           "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    env = airflow_env(airflow_local, pg_server_url, AIRFLOW_CONN_AWS_DEFAULT=json.dumps(aws),
                      TXNWATCH_SENSOR_POKE_S="1")
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(k, None)  # the connection alone must carry the endpoint and credentials
    x = start(dags_test_cmd(airflow_local, "mechanism_x_ingest", conf_x), env, tmp_path / "x.log")
    try:
        from tests.helpers import wait_for

        def sensor_started() -> bool:
            assert x.poll() is None, (tmp_path / "x.log").read_text(errors="replace")[-3000:]
            return "starting task_id=wait_for_s3_source" in (tmp_path / "x.log").read_text(errors="replace")

        wait_for(sensor_started, timeout=120, interval=0.2, what="the S3 sensor")
        time.sleep(3)  # the sensor is waiting (deferred, or rescheduled) for the missing object
        assert x.poll() is None
        from txnwatch.airflow.settings import S3_SENSOR_DEFERRABLE

        text = (tmp_path / "x.log").read_text(errors="replace").lower()
        assert ("defer" if S3_SENSOR_DEFERRABLE else "reschedul") in text
        s3.upload_file(small_dataset["source"], s3_bucket, "in/transactions.csv")
        x.wait(240)
    finally:
        if x.poll() is None:
            x.kill()
    log = (tmp_path / "x.log").read_text(errors="replace")
    assert x.returncode == 0, log[-5000:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="landing/")["Contents"]]
    assert "landing/_END.json" in keys and "landing/chunk_00000004/transactions.csv" in keys
    assert "landing/_reference/customer_importance.csv" in keys


def test_airflow_producer_on_kill_stops_and_a_retry_resumes(airflow_local, small_dataset, pg_server_url,
                                                            tmp_path, schema):
    """on_kill stops Mechanism X between chunks (the task fails); the retry resumes from the checkpoint
    and the landing zone ends up exactly as one uninterrupted run would leave it."""
    import json
    import subprocess

    from tests.airflow_support import ROOT
    from txnwatch.core.db import connect

    landing = tmp_path / "landing"
    env = airflow_env(airflow_local, pg_server_url)
    args = [small_dataset["source"], small_dataset["importance"], str(landing), schema]

    def probe(mode: str) -> dict:
        out = subprocess.run([sys.executable, str(ROOT / "tests" / "airflow_producer_probe.py"), mode, *args],
                             env=env, capture_output=True, text=True, timeout=300)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT:")), None)
        assert line, out.stdout[-3000:] + out.stderr[-3000:]
        return json.loads(line[len("RESULT:"):])

    killed = probe("kill")
    assert killed["outcome"] == "failed" and "stopped" in killed["error"], killed
    assert killed["stop_seconds"] < 5
    assert not (landing / "_END.json").exists()
    with connect(pg_server_url) as conn:
        last = conn.execute(f"SELECT last_chunk FROM {schema}.x_checkpoint").fetchone()[0]
    assert 2 <= last < 8
    retried = probe("run")
    assert retried["outcome"] == "success", retried
    assert retried["summary"]["chunks_landed"] == 8 - last and retried["summary"]["finished"]
    assert json.loads((landing / "_END.json").read_text())["chunks"] == 8
