"""Orchestration helpers behind the operators (no Airflow process needed)."""

from __future__ import annotations

import os
import sys
import threading
import time
from types import SimpleNamespace

from txnwatch.orchestration.checks import local_path, source_available, split_s3
from txnwatch.orchestration.connections import aws_env, postgres_url
from txnwatch.orchestration.local_spark import SparkSubmitProcess, spark_submit_command, spark_submit_env
from txnwatch.orchestration.summary import format_summary


def test_postgres_url_from_connection():
    conn = SimpleNamespace(host="db", port=5433, login="u@x", password="p:w/d", schema="state",
                           extra_dejson={"sslmode": "require", "other": "x"})
    assert postgres_url(conn) == "postgresql://u%40x:p%3Aw%2Fd@db:5433/state?sslmode=require"
    assert postgres_url(SimpleNamespace(host=None, port=None, login=None, password=None, schema=None,
                                        extra_dejson={})) == "postgresql://127.0.0.1/postgres"


def test_aws_env_from_connection():
    conn = SimpleNamespace(login="AK", password="SK", extra_dejson={"endpoint_url": "http://m:9000",
                                                                    "region_name": "eu-west-1"})
    assert aws_env(conn) == {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK",
                             "AWS_ENDPOINT_URL": "http://m:9000", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert aws_env(None) == {}


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


def test_format_summary():
    text = format_summary({"chunks": 60, "rows": 594643, "detections": {"PatId2": 3, "PatId1": 2},
                           "lag_p50_s": 0.2, "lag_p95_s": 0.5, "lag_max_s": 0.9})
    assert "detections       : 5 (PatId1=2, PatId2=3)" in text and "p95 0.500" in text
    assert sys.version_info >= (3, 11)
