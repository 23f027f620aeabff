"""Y's standing Spark (txnwatch.local.spark_server): a warm Spark Connect server that Y's local runner joins
as a client, as Databricks serverless runs it; and the runner's choice between it and spark-submit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.helpers import free_port, wait_for
from tests.reference_rules import detect_store
from tests.y_data import LOW, assert_matches_reference, build_rows, check_exactly_once, land
from txnwatch.core.landing import REFERENCE_KEY
from txnwatch.core.storage import open_store
from txnwatch.local.spark_server import wait_until_warm

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-8c1f"  # what the local stack generates per Airflow home
LOW_ARGS = [a for name in ("upgrade_min_merchant_txns", "upgrade_weight_percentile", "child_min_txns",
                           "dei_min_female_customers")
            for a in ("--threshold", f"{name}={getattr(LOW, name)}")]


@pytest.fixture(scope="module")
def spark_server(tmp_path_factory):
    """One standing server for the module; yields (what its ready file says, its process)."""
    folder = tmp_path_factory.mktemp("spark_server")
    ready, log = folder / "ready.json", folder / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "txnwatch", "spark-server", "--port", str(free_port()),
                                 "--ready-file", str(ready)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(os.environ, SPARK_CONNECT_AUTHENTICATE_TOKEN=TOKEN), start_new_session=True)
    try:
        yield wait_until_warm(ready, proc, log, timeout=240), proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0 and not ready.exists(), log.read_text()[-3000:]


def client_cmd(landing: str, out: str, db: str, schema: str) -> list[str]:
    return [sys.executable, str(ROOT / "spark_jobs" / "detect_job.py"), "--landing", landing, "--output", out,
            "--db", db, "--schema", schema, "--until-end", "--poll-interval", "0.02", "--max-batch-chunks", "2",
            *LOW_ARGS]


def chunks_done(db_url: str, schema: str) -> int:
    try:
        with psycopg.connect(db_url) as conn:
            return conn.execute(f"SELECT count(*) FROM {schema}.y_chunk_metrics").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def test_the_server_says_where_it_listens_once_warm(spark_server):
    from txnwatch.airflow.local_spark import reachable

    info, _ = spark_server
    # localhost: pyspark sends a token without TLS only there.
    assert info["remote"].startswith("sc://localhost:") and info["warm_s"] > 0
    assert reachable(info["remote"])


def test_a_client_without_the_token_is_refused(spark_server):
    """Another user of the machine cannot run Spark (and read files) as the stack's user."""
    info, server = spark_server
    query = f"from pyspark.sql.connect.session import SparkSession as S; S.builder.remote({info['remote']!r})" \
            ".getOrCreate().range(3).count()"
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"}
    refused = subprocess.run([sys.executable, "-c", query], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr, refused.stderr[-2000:]
    wrong = subprocess.run([sys.executable, "-c", query], env={**env, "SPARK_CONNECT_AUTHENTICATE_TOKEN": "wrong"},
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "UNAUTHENTICATED" in wrong.stderr, wrong.stderr[-2000:]
    assert server.poll() is None


def test_y_as_its_client_survives_kill_9_and_writes_exactly_the_reference(spark_server, tmp_path, pg_server_url,
                                                                          schema):
    """A client killed mid-stream leaves the server serving; the restarted client finishes the stream
    with exactly the reference's detections, each once."""
    info, server = spark_server
    rows, imp = build_rows(10_000, seed=5)
    landing, out = open_store(str(tmp_path / "landing")), open_store(str(tmp_path / "out"))
    first = land(landing, rows[:5000], imp, 500, end=False)
    env = dict(os.environ, SPARK_REMOTE=info["remote"], SPARK_CONNECT_AUTHENTICATE_TOKEN=TOKEN)
    cmd = client_cmd(landing.url, out.url, pg_server_url, schema)
    with open(tmp_path / "killed.log", "wb") as log:
        client = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for(lambda: chunks_done(pg_server_url, schema) >= 2, timeout=120, what="the client's first batch")
    finally:
        client.kill()
        client.wait(30)
    land(landing, rows[5000:], None, 500, start=first + 1)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    assert len(ref) > 50

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Spark Connect client of " + info["remote"] in done.stderr
    assert server.poll() is None
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks=20)


def test_the_runner_joins_the_standing_spark_only_when_it_answers():
    from txnwatch.airflow.local_spark import standing_spark

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        remote = f"sc://127.0.0.1:{listener.getsockname()[1]}"
        assert standing_spark({"TXNWATCH_SPARK_REMOTE": remote}) == remote
    assert standing_spark({"TXNWATCH_SPARK_REMOTE": remote}) == ""  # closed: Y starts its own Spark
    assert standing_spark({}) == ""
    assert standing_spark({"TXNWATCH_SPARK_REMOTE": "http://127.0.0.1:1"}) == ""


def test_a_stack_refuses_a_busy_spark_port_in_one_line(tmp_path):
    from txnwatch.core.errors import TxnwatchError
    from txnwatch.local.airflow_home import LocalAirflow
    from txnwatch.local.stack import AirflowStack

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        la = LocalAirflow(home=tmp_path, metadata_url="", state_db_url="", api_port=free_port(), env={},
                          spark_port=busy.getsockname()[1])
        stack = AirflowStack(la, tmp_path / "services")
        with pytest.raises(TxnwatchError, match="TXNWATCH_SPARK_PORT") as refused:
            stack.start()
    assert "\n" not in str(refused.value) and stack.procs == {} and stack.pgid is None
