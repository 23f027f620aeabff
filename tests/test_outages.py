"""Outages of PostgreSQL and S3, cut for real through a TCP proxy (fault_proxy.py): X and Y pause and
carry on, the output equals an uninterrupted run, and a cut longer than the bound ends with one line."""

from __future__ import annotations

import logging
import threading
import time

import boto3
import psycopg
import pytest
from conftest import free_port
from fault_proxy import FaultProxy
from reference_rules import detect_store
from y_data import LOW, assert_matches_reference, build_rows, check_exactly_once, land

from txnwatch.detect import faults
from txnwatch.detect.job import run_detect
from txnwatch.landing import REFERENCE_KEY
from txnwatch.retry import RetryPolicy, Unreachable, is_transient, s3_config, service_of
from txnwatch.storage import open_store

CUT_S = 2.0


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
    from txnwatch.db import Link

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
    from txnwatch.db import connect

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
def cut_once():
    """cut_once(point, proxy, visit): the proxy cuts for CUT_S seconds the `visit`-th time Y reaches `point`."""
    armed: list[str] = []

    def arm(point: str, proxy: FaultProxy, visit: int = 3) -> None:
        seen = []

        def action() -> None:
            seen.append(1)
            if len(seen) == visit:
                proxy.cut(CUT_S)

        faults.on(point, action)
        armed.append(point)

    yield arm
    for point in armed:
        faults.on(point, None)


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
    cut_once(point, s3_proxy, visit)
    with caplog.at_level(logging.WARNING, logger="txnwatch.retry"):
        summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, thresholds=LOW,
                             spark=spark, max_batch_chunks=2, retry_seconds=60, s3_client=client)
    assert s3_proxy.cuts == 1 and summary.finished
    assert any("S3 unreachable" in r.getMessage() for r in caplog.records)
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks)


def test_y_gives_up_after_the_bound_and_a_restart_resumes_exactly(tmp_path, spark, pg_server_url, pg_proxy,
                                                                 schema, stream, cut_once):
    rows, imp = stream
    landing = open_store(str(tmp_path / "landing"))
    chunks = land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    out = open_store(str(tmp_path / "out"))
    faults.on("after_rules", lambda: pg_proxy.down() if pg_proxy.cuts == 0 else None)
    try:
        with pytest.raises(Unreachable, match=r"^PostgreSQL unreachable for \d+ s \(bound 2 s\)"):
            run_detect(landing.url, out.url, pg_proxy.url, schema, until_end=True, thresholds=LOW, spark=spark,
                       max_batch_chunks=2, retry_seconds=2)
    finally:
        faults.on("after_rules", None)
    pg_proxy.up()
    run_detect(landing.url, out.url, pg_proxy.url, schema, until_end=True, thresholds=LOW, spark=spark,
               max_batch_chunks=2)
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref), chunks)


def test_a_stop_request_during_an_outage_ends_the_wait(pg_proxy):
    from txnwatch.db import connect

    stop = threading.Event()
    pg_proxy.down()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Unreachable):
        RetryPolicy(60, stop).run(lambda: connect(pg_proxy.url))
    assert time.monotonic() - started < 5
