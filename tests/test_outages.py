"""Outages of PostgreSQL and S3, cut for real through a TCP proxy (fault_proxy.py): X and Y pause and
carry on, the output equals an uninterrupted run, and a cut longer than the bound ends with one line."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import boto3
import psycopg
import pytest

from tests.fault_points import arm
from tests.fault_proxy import FaultProxy
from tests.helpers import free_port, wait_for
from tests.reference_rules import detect_store
from tests.y_data import LOW, assert_matches_reference, build_rows, check_exactly_once, land
from txnwatch.core.landing import REFERENCE_KEY
from txnwatch.core.retry import RetryPolicy, Unreachable, is_transient, s3_config, service_of
from txnwatch.core.storage import open_store
from txnwatch.detect.job import run_detect

CUT_S = 2.0
S3_CUT_S = 5.0  # longer than botocore's own retries of one call (3 attempts, backoff <= 1 s + 2 s)


# --- what counts as an outage ------------------------------------------------------------------

def test_a_refused_postgres_connection_is_an_outage():
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout=2)
    assert service_of(e.value) == "PostgreSQL"


def test_an_administrator_shutdown_of_the_session_is_an_outage(pg_server_url):
    with psycopg.connect(pg_server_url, autocommit=True) as victim, psycopg.connect(pg_server_url) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        with pytest.raises(psycopg.Error) as e:
            victim.execute("SELECT 1")
    assert is_transient(e.value)


def test_a_missing_database_or_bad_sql_is_not_an_outage(pg_server_url):
    from urllib.parse import urlparse

    missing = urlparse(pg_server_url)._replace(path="/no_such_database").geturl()
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(missing)
    assert not is_transient(e.value)
    with psycopg.connect(pg_server_url) as conn, pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT * FROM no_such_table")
    assert not is_transient(e.value)


def test_an_unreachable_s3_endpoint_and_throttling_are_outages_a_missing_bucket_is_not(s3_endpoint):
    from botocore.exceptions import ClientError

    down = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{free_port()}",
                        config=s3_config().merge(boto3.session.Config(retries={"max_attempts": 1})))
    with pytest.raises(Exception) as e:
        down.list_buckets()
    assert service_of(e.value) == "S3"
    with pytest.raises(ClientError) as e:
        boto3.client("s3").head_object(Bucket="no-such-bucket-x", Key="k")
    assert not is_transient(e.value)
    slow_down = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                            "PutObject")
    assert service_of(slow_down) == "S3"


# --- the policy --------------------------------------------------------------------------------

def test_a_unit_of_work_is_rerun_after_the_cut_with_one_warning(pg_proxy, caplog):
    from txnwatch.core.db import Link

    link = Link(pg_proxy.url, autocommit=True)
    calls = []

    def work() -> int:
        calls.append(1)
        if len(calls) == 1:
            link.conn.execute("SELECT 1")
            pg_proxy.cut(CUT_S)
        return link.conn.execute("SELECT 41 + 1").fetchone()[0]

    with caplog.at_level(logging.WARNING, logger="txnwatch.retry"):
        assert RetryPolicy(30).run(work, link.drop) == 42
    link.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "PostgreSQL unreachable" in warnings[0] and "up to 30 s" in warnings[0]
    assert "reachable again" in warnings[1]


def test_an_outage_longer_than_the_bound_ends_with_one_clear_error(pg_proxy):
    from txnwatch.core.db import connect

    pg_proxy.down()
    with pytest.raises(Unreachable, match=r"^PostgreSQL unreachable for \d+ s \(bound 1 s\): cannot connect"):
        RetryPolicy(1).run(lambda: connect(pg_proxy.url))


def test_an_error_a_retry_cannot_cure_is_raised_at_once(pg_server_url):
    calls = []

    def work():
        calls.append(1)
        with psycopg.connect(pg_server_url) as conn:
            conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(psycopg.errors.UndefinedTable):
        RetryPolicy(30).run(work)
    assert len(calls) == 1


# --- Y, cut at each point of a batch -------------------------------------------------------------

@pytest.fixture(scope="module")
def stream():
    rows, imp = build_rows(6_000, seed=11)
    return rows, imp


@pytest.fixture
def cut_once(monkeypatch):
    """cut_once(point, proxy, visit): the proxy cuts for CUT_S seconds the `visit`-th time Y reaches `point`."""

    def arm_cut(point: str, proxy: FaultProxy, visit: int = 3, seconds: float = CUT_S) -> None:
        seen = []

        def action() -> None:
            seen.append(1)
            if len(seen) == visit:
                proxy.cut(seconds)

        arm(point, action, monkeypatch.setattr)

    return arm_cut


@pytest.mark.parametrize(("point", "visit"), [("after_spark_read", 3), ("after_rules", 3), ("before_commit", 3),
                                             ("after_commit", 3), ("before_file", 1)])
def test_y_rides_out_a_postgres_cut_at(point, visit, tmp_path, spark, pg_server_url, pg_proxy, schema, stream,
                                       cut_once, caplog):
    """before the transaction, inside it, as it commits, after it, and between commit and file PUT."""
    rows, imp = stream
    landing = open_store(str(tmp_path / "landing"))
    chunks = land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    out = open_store(str(tmp_path / "out"))
    cut_once(point, pg_proxy, visit)
    with caplog.at_level(logging.WARNING, logger="txnwatch.retry"):
        summary = run_detect(landing.url, out.url, pg_proxy.url, schema, until_end=True, thresholds=LOW,
                             spark=spark, max_batch_chunks=2, retry_seconds=60)
    assert pg_proxy.cuts == 1 and summary.finished
    assert any("PostgreSQL unreachable" in r.getMessage() for r in caplog.records)
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks)


@pytest.mark.parametrize(("point", "visit"), [("after_spark_read", 3), ("before_file", 1)])
def test_y_rides_out_an_s3_cut_at(point, visit, s3_bucket, spark, pg_server_url, s3_proxy, schema, stream, cut_once,
                                  caplog):
    rows, imp = stream
    client = boto3.client("s3", endpoint_url=s3_proxy.url, config=s3_config())
    landing = open_store(f"s3://{s3_bucket}/landing", client=client)
    chunks = land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    out = open_store(f"s3://{s3_bucket}/out", client=client)
    cut_once(point, s3_proxy, visit, S3_CUT_S)
    with caplog.at_level(logging.WARNING, logger="txnwatch.retry"):
        summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, thresholds=LOW,
                             spark=spark, max_batch_chunks=2, retry_seconds=60, s3_client=client)
    assert s3_proxy.cuts == 1 and summary.finished
    assert any("S3 unreachable" in r.getMessage() for r in caplog.records)
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks)


@pytest.mark.parametrize("service", ["PostgreSQL", "S3"])
def test_y_started_during_an_outage_waits_for_it(service, s3_bucket, spark, pg_server_url, pg_proxy, s3_proxy,
                                                 schema, stream, caplog):
    rows, imp = stream
    client = boto3.client("s3", endpoint_url=s3_proxy.url, config=s3_config())
    landing = open_store(f"s3://{s3_bucket}/landing", client=client)
    land(landing, rows[:2_000], imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    proxy = pg_proxy if service == "PostgreSQL" else s3_proxy
    proxy.cut(S3_CUT_S)
    with caplog.at_level(logging.WARNING, logger="txnwatch.retry"):
        summary = run_detect(landing.url, f"s3://{s3_bucket}/out", pg_proxy.url, schema, until_end=True,
                             thresholds=LOW, spark=spark, retry_seconds=60, s3_client=client)
    assert summary.finished and summary.chunks == 4
    assert any(f"{service} unreachable" in r.getMessage() for r in caplog.records)
    assert_matches_reference(open_store(f"s3://{s3_bucket}/out", client=client), ref)


def test_y_gives_up_after_the_bound_and_a_restart_resumes_exactly(tmp_path, spark, pg_server_url, pg_proxy,
                                                                 schema, stream, monkeypatch):
    rows, imp = stream
    landing = open_store(str(tmp_path / "landing"))
    chunks = land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    out = open_store(str(tmp_path / "out"))
    with monkeypatch.context() as patch:
        arm("after_rules", lambda: pg_proxy.down() if pg_proxy.cuts == 0 else None, patch.setattr)
        with pytest.raises(Unreachable, match=r"^PostgreSQL unreachable for \d+ s \(bound 2 s\)"):
            run_detect(landing.url, out.url, pg_proxy.url, schema, until_end=True, thresholds=LOW, spark=spark,
                       max_batch_chunks=2, retry_seconds=2)
    pg_proxy.up()
    run_detect(landing.url, out.url, pg_proxy.url, schema, until_end=True, thresholds=LOW, spark=spark,
               max_batch_chunks=2)
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks)


def test_a_stop_request_during_an_outage_ends_the_wait(pg_proxy):
    from txnwatch.core.db import connect

    stop = threading.Event()
    pg_proxy.down()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Unreachable):
        RetryPolicy(60, stop).run(lambda: connect(pg_proxy.url))
    assert time.monotonic() - started < 5


# --- X and Y live, 20 s cuts ----------------------------------------------------------------------

LIVE_CUT_S = 20.0


def _checkpoint(db_url: str, schema: str) -> tuple | None:
    """(ready_at, last_chunk) of Y, read around the proxy; None before Y made its tables."""
    try:
        with psycopg.connect(db_url) as conn:
            return conn.execute(f"SELECT ready_at, last_chunk FROM {schema}.y_checkpoint WHERE id = 1").fetchone()
    except psycopg.errors.UndefinedTable:
        return None


@pytest.mark.slow
@pytest.mark.parametrize("service", ["PostgreSQL", "S3"])
def test_x_and_y_live_ride_out_a_20_s_cut(service, tmp_path, pg_server_url, pg_proxy, s3_bucket, s3_proxy, schema):
    """Y started first, X at its cadence; a 20 s cut mid-stream leaves both running, and the output is
    what an uninterrupted run writes."""
    import os
    import subprocess
    import sys

    from tests.test_detect_kill import LOW_ARGS, ROOT
    from tests.y_data import csv_bytes
    from txnwatch.core.landing import CANONICAL_COLUMNS, IMPORTANCE_COLUMNS

    rows, imp = build_rows(10_000, seed=12)
    (tmp_path / "tx.csv").write_bytes(csv_bytes(CANONICAL_COLUMNS, rows))
    (tmp_path / "imp.csv").write_bytes(csv_bytes(IMPORTANCE_COLUMNS, imp))
    landing, output = f"s3://{s3_bucket}/landing", f"s3://{s3_bucket}/out"
    env = dict(os.environ, AWS_ENDPOINT_URL=s3_proxy.url)  # warmed: X must still be running at Y's chunk 3
    common = ["--db", pg_proxy.url, "--schema", schema, "--retry-seconds", "90"]
    y = subprocess.Popen([sys.executable, "-m", "txnwatch", "detect", "--landing", landing, "--output", output,
                          "--until-end", "--poll-interval", "0.05", *LOW_ARGS, *common],
                         cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    x = None
    try:
        wait_for(lambda: (_checkpoint(pg_server_url, schema) or (None,))[0] is not None, timeout=120,
                 what="Y ready")
        x = subprocess.Popen([sys.executable, "-m", "txnwatch", "ingest", "--source", str(tmp_path / "tx.csv"),
                              "--importance", str(tmp_path / "imp.csv"), "--landing", landing,
                              "--rows-per-chunk", "400", "--interval", "1", *common],
                             cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: _checkpoint(pg_server_url, schema)[1] >= 3, timeout=60, what="Y at chunk 3")
        assert x.poll() is None, "X finished before the cut: the cut would test nothing"
        proxy = pg_proxy if service == "PostgreSQL" else s3_proxy
        proxy.cut(LIVE_CUT_S)
        wait_for(lambda: proxy.is_up, timeout=LIVE_CUT_S + 10, interval=0.2, what="the cut to end")
        assert x.poll() is None and y.poll() is None, "a process ended during the cut"
        x_err, y_err = x.communicate(timeout=120)[1], y.communicate(timeout=120)[1]
    finally:
        for p in (x, y):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert x.returncode == 0, x_err[-2000:]
    assert y.returncode == 0, y_err[-2000:]
    for err in (x_err, y_err):
        assert f"{service} unreachable" in err and "reachable again" in err and "Traceback" not in err
    store = open_store(landing, client=boto3.client("s3"))
    ref = detect_store(store, REFERENCE_KEY, LOW)
    assert len(ref) > 50
    assert_matches_reference(open_store(output, client=boto3.client("s3")), ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks=25)
    with psycopg.connect(pg_server_url) as conn:
        assert conn.execute(f"SELECT count(*), count(DISTINCT chunk), sum(rows + rejected) FROM {schema}.x_chunks"
                            ).fetchone() == (25, 25, 10_000)


def test_x_gives_up_after_the_bound_with_one_line_and_a_rerun_resumes_exactly(tmp_path, pg_server_url, pg_proxy,
                                                                                schema, db):
    import os
    import subprocess
    import sys

    from tests.test_detect_kill import ROOT
    from tests.x_data import ledger, snapshot, write_banksim, write_importance

    src, imp = write_banksim(tmp_path / "tx.csv", 60), write_importance(tmp_path / "imp.csv")
    env = {**os.environ, "TXNWATCH_LOCAL_DIR": str(tmp_path / "local")}

    def ingest(landing: Path, db: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "txnwatch", "ingest", "--source", str(src), "--importance", str(imp),
                "--landing", str(landing), "--db", db, "--schema", schema, "--rows-per-chunk", "5", *extra]

    # The password travels in a key=value DSN: it must not show in the error either.
    dsn = f"host=127.0.0.1 port={pg_proxy.port} user=postgres password=x-pw-9 dbname=postgres"
    x = subprocess.Popen(ingest(tmp_path / "land", dsn, "--interval", "0.2", "--retry-seconds", "2"),
                         cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(ledger(db, schema, str(tmp_path / "land"))) >= 3, timeout=60, what="chunk 3")
    pg_proxy.down()
    err = x.communicate(timeout=60)[1]
    assert x.returncode == 2
    last = err.splitlines()[-1]
    assert last.startswith("txnwatch ingest: error: PostgreSQL unreachable for ") and "(bound 2 s)" in last
    assert "Traceback" not in err and "x-pw-9" not in err
    pg_proxy.up()
    assert subprocess.run(ingest(tmp_path / "land", dsn, "--interval", "0"), cwd=ROOT, env=env,
                          capture_output=True, timeout=60).returncode == 0
    # The same chunks, byte for byte, as an ingest that never saw an outage.
    assert subprocess.run(ingest(tmp_path / "clean", pg_server_url, "--interval", "0"), cwd=ROOT, env=env,
                          capture_output=True, timeout=60).returncode == 0
    assert snapshot(tmp_path / "land") == snapshot(tmp_path / "clean")
    assert [k for k, *_ in ledger(db, schema, str(tmp_path / "land"))] == list(range(1, 13))
