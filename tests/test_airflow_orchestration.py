"""Orchestration helpers behind the operators (no Airflow process needed)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from txnwatch.airflow.checks import local_path, source_available, split_s3
from txnwatch.airflow.connections import aws_env, postgres_url
from txnwatch.airflow.local_spark import SparkSubmitProcess, spark_submit_command, spark_submit_env
from txnwatch.records.summary import format_summary


def test_postgres_url_from_an_airflow_connection_through_the_hook(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TW_PG", json.dumps({
        "conn_type": "postgres", "host": "db", "port": 5433, "login": "u@x", "password": "p:w/d", "schema": "state",
        "extra": {"sslmode": "require", "other": "x"}}))
    monkeypatch.setenv("AIRFLOW_CONN_TW_PG_BARE", json.dumps({"conn_type": "postgres"}))
    assert postgres_url("tw_pg") == "postgresql://u%40x:p%3Aw%2Fd@db:5433/state?sslmode=require"
    assert postgres_url("tw_pg_bare") == "postgresql://127.0.0.1/postgres"


def test_aws_env_from_an_airflow_connection_through_the_hook(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TW_AWS", json.dumps({
        "conn_type": "aws", "login": "AK", "password": "SK",
        "extra": {"endpoint_url": "http://m:9000", "region_name": "eu-west-1", "aws_session_token": "TOK"}}))
    assert aws_env("tw_aws") == {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK",
                                 "AWS_SESSION_TOKEN": "TOK", "AWS_ENDPOINT_URL": "http://m:9000",
                                 "AWS_DEFAULT_REGION": "eu-west-1"}


def test_spark_submit_command_keeps_the_db_url_out_of_argv(monkeypatch):
    monkeypatch.setenv("TXNWATCH_SPARK_PACKAGES", "org.apache.hadoop:hadoop-aws:3.5.0")
    monkeypatch.setenv("TXNWATCH_SPARK_CONF", "spark.hadoop.fs.s3a.endpoint=http://minio:9000, a=b")
    cmd = spark_submit_command("s3://b/l", "s3://b/o", "sch", True, {"child_min_txns": 5})
    assert cmd[0].endswith("spark-submit") and cmd[cmd.index("--packages") + 1].endswith("hadoop-aws:3.5.0")
    assert "spark.hadoop.fs.s3a.endpoint=http://minio:9000" in cmd and "a=b" in cmd
    i = next(i for i, a in enumerate(cmd) if a.endswith("detect_job.py"))
    assert cmd[i + 1:] == ["--landing", "s3://b/l", "--output", "s3://b/o", "--schema", "sch", "--until-end",
                           "--threshold", "child_min_txns=5"]
    env = spark_submit_env("postgresql://u:secret@h/d", {"AWS_ACCESS_KEY_ID": "AK"})
    assert env["TXNWATCH_DB_URL"] == "postgresql://u:secret@h/d" and env["AWS_ACCESS_KEY_ID"] == "AK"
    assert not any("secret" in a for a in cmd)


def test_spark_submit_process_stop_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    proc = SparkSubmitProcess(["bash", "-c", f"sleep 300 & echo $! > {pidfile}; echo started; wait"],
                              dict(os.environ))
    lines: list[str] = []
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(proc.run(lines.append)))
    t.start()
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    proc.stop(grace=5)
    t.join(10)
    assert result and result[0] != 0 and lines == ["started"]
    time.sleep(0.2)
    try:
        os.kill(child, 0)
        alive = open(f"/proc/{child}/stat").read().split()[2] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive, "the grandchild survived"


def test_checks(tmp_path):
    (tmp_path / "tx.csv").write_text("a\n")
    assert source_available(str(tmp_path / "tx.csv"))
    assert source_available(f"file://{tmp_path / 'tx.csv'}")
    assert not source_available(str(tmp_path / "missing.csv"))
    assert split_s3(["s3://b/k", "/x"]) == (["s3://b/k"], ["/x"])


def test_local_path_names_local_files_only(tmp_path):
    assert local_path(str(tmp_path / "tx.csv")) == tmp_path / "tx.csv"
    assert local_path(f"file://{tmp_path}/tx.csv") == tmp_path / "tx.csv"
    assert local_path("s3://b/k.csv") is None and local_path("https://h/x.csv") is None
    assert local_path("1AbCdEfGhIjKlMnOpQrStUvWxYz") is None  # a bare Google Drive file id


def test_the_sensor_and_the_ingest_agree_on_what_a_drive_id_is(tmp_path, monkeypatch):
    from txnwatch.ingest.sources import looks_like_drive_id

    monkeypatch.chdir(tmp_path)
    drive_id, short = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345", "abcdefghijklmnopqrstu"  # 33 and 21 characters
    assert looks_like_drive_id(drive_id) and not looks_like_drive_id(short)
    assert local_path(drive_id) is None and source_available(drive_id)
    # Not a Drive id for the ingest, so a local file name for the sensor: missing, hence not available.
    assert local_path(short) == Path(short) and not source_available(short)


def test_format_summary():
    text = format_summary({"chunks": 60, "rows": 594643, "detections": {"PatId2": 3, "PatId1": 2},
                           "lag_p50_s": 0.2, "lag_p95_s": 0.5, "lag_max_s": 0.9})
    assert "detections       : 5 (PatId1=2, PatId2=3)" in text and "p95 0.500" in text
    assert sys.version_info >= (3, 11)


def test_spark_lines_keep_their_level_and_lose_their_timestamp():
    import logging

    from txnwatch.airflow.local_spark import spark_log_record

    assert spark_log_record("26/11/26 15:02:03 WARN NativeCodeLoader: Unable to load native-hadoop") == (
        logging.WARNING, "NativeCodeLoader: Unable to load native-hadoop")
    assert spark_log_record("2026-11-26 15:02:03,412 INFO txnwatch.detect.job chunk 3 committed") == (
        logging.INFO, "txnwatch.detect.job chunk 3 committed")
    assert spark_log_record("2026-11-26 15:02:03,412 ERROR txnwatch.cli boom")[0] == logging.ERROR
    assert spark_log_record("  at org.apache.Foo(Foo.java:1)") == (logging.INFO, "  at org.apache.Foo(Foo.java:1)")


def test_local_spark_task_log_has_one_timestamp_per_line_and_spark_warnings_as_warning(caplog):
    import logging

    from txnwatch.airflow.local_spark import log_spark_line

    logger = logging.getLogger("test.spark")
    with caplog.at_level(logging.INFO, logger="test.spark"):
        log_spark_line(logger, "26/11/26 15:02:03 WARN Utils: Your hostname resolves to a loopback address")
        log_spark_line(logger, "2026-11-26 15:02:04,001 INFO txnwatch.detect.job ready")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Utils: Your hostname resolves to a loopback address"),
        ("INFO", "txnwatch.detect.job ready")]


def test_source_sensor_fails_at_once_on_a_missing_local_file(tmp_path):
    import pytest
    from airflow.sdk.exceptions import AirflowFailException

    from txnwatch.airflow.tasks import inputs_readable

    with pytest.raises(AirflowFailException, match="no such file: .*nope.csv"):
        inputs_readable([str(tmp_path / "nope.csv")], poke_interval=2, timeout=3600)


def test_source_sensor_says_what_it_waits_for(caplog):
    import logging

    from txnwatch.airflow.tasks import inputs_readable

    url = "http://127.0.0.1:9/not-yet.csv"  # nothing listens on the discard port
    with caplog.at_level(logging.INFO, logger="txnwatch.airflow.tasks"):
        assert inputs_readable([url], poke_interval=2, timeout=3600) is False
    assert f"waiting for {url} to become readable" in caplog.text


def test_source_sensor_is_done_when_every_input_is_readable(tmp_path):
    from txnwatch.airflow.tasks import inputs_readable

    (tmp_path / "tx.csv").write_text("a\n")
    assert inputs_readable([str(tmp_path / "tx.csv")], poke_interval=2, timeout=3600) is True


def test_the_default_source_is_generated_on_demand(tmp_path, monkeypatch):
    import pytest
    from airflow.sdk.exceptions import AirflowSkipException

    from txnwatch.airflow import settings, tasks

    src, imp = tmp_path / "data" / "transactions.csv", tmp_path / "data" / "customer_importance.csv"
    monkeypatch.setattr(settings, "DEFAULT_SOURCE", str(src))
    monkeypatch.setattr(settings, "DEFAULT_IMPORTANCE", str(imp))
    monkeypatch.setattr("txnwatch.generate.DEMO_ROWS", 20_000)  # a small set: same code path
    assert tasks.prepare_default_data(str(src), str(imp)) == str(src)
    assert src.stat().st_size > 0 and imp.stat().st_size > 0
    with pytest.raises(AirflowSkipException, match="already there"):
        tasks.prepare_default_data(str(src), str(imp))
    with pytest.raises(AirflowSkipException, match="come from the form"):
        tasks.prepare_default_data(str(tmp_path / "mine.csv"), str(imp))


def test_stop_signals_become_one_stop_request_and_handlers_are_restored():
    import signal

    import pytest

    from txnwatch.local.stack import StopRequested, exit_code, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        with pytest.raises(StopRequested) as stop:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)  # interrupted by the handler at once
        assert stop.value.signum == signal.SIGHUP and exit_code(stop.value) == 129
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal asks for nothing new
        time.sleep(0.1)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_signal_does_not_cut_a_stack_stop_short(tmp_path):
    """SIGTERM arriving while the stack stops its group: the stop completes, the group is gone."""
    import signal
    import subprocess

    from txnwatch.local.stack import AirflowStack, _group_alive, stop_on_signals

    # A "service" that ignores SIGTERM, so stop() must wait out its grace period and SIGKILL it.
    proc = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; echo ignoring; sleep 60"],
        process_group=0, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline() == "ignoring\n"  # the trap is set before the stop begins
    stack = AirflowStack(la=None, log_dir=tmp_path)
    stack.procs, stack.pgid = {"svc": proc}, proc.pid
    with stop_on_signals():
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        stack.stop(grace=2)
        timer.join()
    assert not _group_alive(proc.pid) and proc.poll() is not None
