"""The detection job end to end against real PostgreSQL (and the moto S3 server), compared with the
independent reference implementation of the rules."""

from __future__ import annotations

import json
import re
import threading

import psycopg
import pytest

from tests.helpers import wait_for
from tests.reference_rules import detect_store
from tests.y_data import LOW, assert_matches_reference, build_rows, flat, land, read_output
from txnwatch.core.errors import TxnwatchError
from txnwatch.core.landing import END_KEY, REFERENCE_KEY, chunk_key
from txnwatch.core.storage import open_store
from txnwatch.detect.job import run_detect

IST_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30$")


@pytest.fixture(scope="module")
def world():
    return build_rows(10_000, seed=1)


def detections_by_chunk(db_url: str, schema: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(f"SELECT seq, chunk, pattern_id, customer_id, merchant_id, customer_name "
                            f"FROM {schema}.detected_patterns ORDER BY seq").fetchall()


def test_job_equals_reference_one_chunk_at_a_time(tmp_path, spark, pg_server_url, schema, world):
    rows, imp = world
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    assert {d.pattern_id for d in ref} == {"PatId1", "PatId2", "PatId3"} and len(ref) > 100
    out = open_store(str(tmp_path / "out"))
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=1,
                         thresholds=LOW, spark=spark)
    assert summary.finished and summary.chunks == 20 and summary.rows == 10_000
    assert_matches_reference(out, ref)
    # Chunk attribution too, and the spec's record shape.
    got = detections_by_chunk(pg_server_url, schema)
    assert [(c, p, cu, m) for _, c, p, cu, m, _ in got] == [(d.chunk, d.pattern_id, d.customer_id, d.merchant_id)
                                                            for d in ref]
    rec = read_output(out)[0][0]
    assert list(rec) == ["YStartTime", "detectionTime", "patternId", "ActionType", "customerName", "merchantId"]
    assert IST_TIME.match(rec["YStartTime"]) and IST_TIME.match(rec["detectionTime"])
    # Per-chunk metrics were committed with the chunks.
    with psycopg.connect(pg_server_url) as conn:
        n, rows_sum, dets = conn.execute(f"SELECT count(*), sum(rows), sum(detections) "
                                         f"FROM {schema}.y_chunk_metrics").fetchone()
    assert (n, rows_sum, dets) == (20, 10_000, len(ref))

    # A restart after the final flush writes nothing new and changes nothing.
    before = {k: out.get(k) for k in out.list()}
    again = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, thresholds=LOW, spark=spark)
    assert again.chunks == 0 and again.files_written == 0
    assert {k: out.get(k) for k in out.list()} == before


def test_backlog_batches_detect_the_same_as_one_by_one(tmp_path, spark, pg_server_url, schema, world):
    rows, imp = world
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    out = open_store(str(tmp_path / "out"))
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=7,
                         thresholds=LOW, spark=spark)
    assert summary.chunks == 20
    assert_matches_reference(out, ref)
    got = detections_by_chunk(pg_server_url, schema)
    assert [(c, p, cu, m) for _, c, p, cu, m, _ in got] == [(d.chunk, d.pattern_id, d.customer_id, d.merchant_id)
                                                            for d in ref]
    with psycopg.connect(pg_server_url) as conn:
        sizes = conn.execute(f"SELECT batch_size, count(*) FROM {schema}.y_chunk_metrics "
                             "GROUP BY 1 ORDER BY 1").fetchall()
    assert sizes == [(6, 6), (7, 14)]


def test_restart_mid_stream_loads_the_state_and_matches_an_uninterrupted_run(tmp_path, spark, pg_server_url,
                                                                            schema, world):
    """Y stops after chunk 8 (merchants already past the volume bar), restarts with its state loaded
    from Postgres, and writes exactly what one uninterrupted run writes."""
    rows, imp = world
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows[:4_000], imp, 500, end=False)
    out = open_store(str(tmp_path / "out"))
    stop = threading.Event()
    first = threading.Thread(target=run_detect, args=(landing.url, out.url, pg_server_url, schema),
                             kwargs=dict(poll_interval=0.02, thresholds=LOW, spark=spark, stop=stop))
    first.start()
    wait_for(lambda: _last_chunk(pg_server_url, schema) == 8, timeout=120, what="Y at chunk 8")
    stop.set()
    first.join(60)
    assert not first.is_alive()
    land(landing, rows[4_000:], None, 500, start=9)
    resumed = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, thresholds=LOW, spark=spark)
    assert resumed.chunks == 12

    whole = open_store(str(tmp_path / "whole"))
    run_detect(landing.url, whole.url, pg_server_url, f"{schema}_w", until_end=True, thresholds=LOW, spark=spark)
    try:
        assert flat(read_output(out)) == flat(read_output(whole))
        assert_matches_reference(out, detect_store(landing, REFERENCE_KEY, LOW))
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema}_w CASCADE")


def _last_chunk(db_url: str, schema: str) -> int:
    with psycopg.connect(db_url) as conn:
        try:
            row = conn.execute(f"SELECT last_chunk FROM {schema}.y_checkpoint").fetchone()
        except psycopg.errors.UndefinedTable:  # the job has not created its schema yet
            return 0
    return row[0] if row else 0


def test_live_stream_and_start_before_landing_exists(tmp_path, spark, pg_server_url, schema):
    """Y starts first (no landing folder yet), chunks arrive while it runs, _END.json ends it."""
    rows, imp = build_rows(3_000, seed=5)
    landing_dir = tmp_path / "landing"
    out = open_store(str(tmp_path / "out"))
    result = {}
    th = threading.Thread(target=lambda: result.update(s=run_detect(
        str(landing_dir), out.url, pg_server_url, schema, until_end=True, poll_interval=0.02,
        thresholds=LOW, spark=spark)))
    th.start()
    landing = open_store(str(landing_dir))
    land(landing, rows[:1000], imp, 500, end=False)
    land(landing, rows[1000:], None, 500, end=False, start=3)
    landing.put(END_KEY, json.dumps({"chunks": 6, "rows": 3000, "rejected": 0}).encode())
    th.join(120)
    assert not th.is_alive() and result["s"].finished and result["s"].chunks == 6
    assert_matches_reference(out, detect_store(landing, REFERENCE_KEY, LOW))


def test_s3_landing_and_output(s3_bucket, spark, pg_server_url, schema):
    rows, imp = build_rows(4_000, seed=3)
    landing = open_store(f"s3://{s3_bucket}/landing")
    land(landing, rows, imp, 500)
    out = open_store(f"s3://{s3_bucket}/out")
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=3,
                         thresholds=LOW, spark=spark)
    assert summary.finished and summary.rows == 4_000
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    assert len(ref) > 0
    assert_matches_reference(out, ref)


def test_bad_landed_data_is_quarantined_and_the_stream_goes_on(tmp_path, spark, pg_server_url, schema):
    rows, imp = build_rows(2_000, seed=4)
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500, end=False)  # chunks 1-4
    header = "transactionId,customerId,customerName,merchantId,amount,transactionType,gender,timestamp\n"
    good = ",".join(rows[0]) + "\n"
    landing.put(chunk_key(5), (header + good + "x1,C0001,N,M000,abc,t,F,0\n" + "x2,C0001,N\n"
                               + "x3,,N,M000,1.00,t,F,0\n" + "x4,C0001,N,,1.00,t,F,0\n" + good).encode())
    landing.put(chunk_key(6), header.encode())  # header only: zero rows
    landing.put(chunk_key(7), b"\x89PNG\r\n\x1a\n\x00\x00binary")  # unreadable object
    landing.put(chunk_key(8), b"a,b,c\n1,2,3\n")  # wrong header
    landing.put(chunk_key(9), b"")  # empty object
    landing.put(chunk_key(10), (header + good).encode())
    landing.put(END_KEY, b'{"chunks": 10, "rows": 2006, "rejected": 0}')
    out = open_store(str(tmp_path / "out"))
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=4,
                         thresholds=LOW, spark=spark)
    assert summary.finished and summary.chunks == 10
    assert summary.rows == 2_000 + 2 + 1 and summary.quarantined_rows == 4 and summary.quarantined_chunks == 3
    with psycopg.connect(pg_server_url) as conn:
        q = conn.execute(f"SELECT chunk, source_line, reason FROM {schema}.y_quarantine "
                         "ORDER BY chunk, source_line").fetchall()
        metrics = dict(conn.execute(f"SELECT chunk, rows FROM {schema}.y_chunk_metrics").fetchall())
    assert q[:4] == [(5, 3, "non-numeric amount"), (5, 4, "wrong field count"), (5, 5, "empty customerId"),
                     (5, 6, "empty merchantId")]
    assert [(c, line) for c, line, _ in q[4:]] == [(7, None), (8, None), (9, None)]
    assert "not UTF-8" in q[4][2] and "wrong header" in q[5][2] and "empty object" in q[6][2]
    assert metrics[5] == 2 and metrics[6] == 0 and metrics[7] == 0 and metrics[10] == 1
    # The reference skips the same rows and chunks, so the detections agree.
    assert_matches_reference(out, detect_store(landing, REFERENCE_KEY, LOW))


def test_second_job_on_a_schema_is_refused(tmp_path, spark, pg_server_url, schema):
    from txnwatch.core.db import connect, init_schema
    from txnwatch.detect.state import job_lock

    holder = connect(pg_server_url, autocommit=True)
    try:
        init_schema(holder, schema)
        job_lock(schema)(holder)
        with pytest.raises(TxnwatchError, match="another detection job is already running"):
            run_detect(str(tmp_path / "l"), str(tmp_path / "o"), pg_server_url, schema, until_end=True,
                       spark=spark)
    finally:
        holder.close()


def test_schema_bound_to_one_stream(tmp_path, spark, pg_server_url, schema):
    landing = open_store(str(tmp_path / "landing"))
    landing.put(END_KEY, b'{"chunks": 0, "rows": 0, "rejected": 0}')
    run_detect(landing.url, str(tmp_path / "out"), pg_server_url, schema, until_end=True, spark=spark)
    with pytest.raises(TxnwatchError, match="already tracks landing"):
        run_detect(landing.url, str(tmp_path / "other"), pg_server_url, schema, until_end=True, spark=spark)


def test_reapplying_a_committed_chunk_changes_nothing(tmp_path, spark, pg_server_url, schema):
    from datetime import UTC, datetime

    from txnwatch.core.db import Link
    from txnwatch.detect.batch import Batches, DetectSummary

    rows, imp = build_rows(1_500, seed=6)
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500)
    run_detect(landing.url, str(tmp_path / "out"), pg_server_url, schema, until_end=True, thresholds=LOW,
               spark=spark)
    tables = ("customer_txn_stats", "merchant_txn_count", "merchant_gender_customers", "detected_patterns",
              "y_chunk_metrics", "y_checkpoint")

    def snapshot(conn):
        return {t: conn.execute(f"SELECT * FROM {schema}.{t} ORDER BY 1, 2").fetchall() for t in tables}

    link = Link(pg_server_url, autocommit=True)
    try:
        before = snapshot(link.conn)
        batcher = Batches(spark, link, schema, landing, LOW, datetime.now(UTC))
        batcher.run([2, 3], DetectSummary())  # already committed: the checkpoint check makes it a no-op
        batcher.close()
        assert snapshot(link.conn) == before
    finally:
        link.close()


def test_postgres_down_is_one_clear_error(tmp_path, spark):
    with pytest.raises(TxnwatchError, match="cannot connect to PostgreSQL"):
        run_detect(str(tmp_path / "l"), str(tmp_path / "o"), "postgresql://u:pw@127.0.0.1:1/x", spark=spark,
                   retry_seconds=0)


def test_chunk_spark_cannot_read_is_quarantined(tmp_path, spark, pg_server_url, schema, monkeypatch):
    """A chunk whose file Spark fails on (here: it vanishes after the header check) is retried alone,
    then quarantined whole; the other chunks of its batch go through."""
    import txnwatch.detect.reader as reader

    rows, imp = build_rows(1_500, seed=8)
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500)
    real = reader._native_frame

    def flaky(spark_, paths):
        return real(spark_, [p.replace("chunk_00000002", "gone_00000002") for p in paths])

    monkeypatch.setattr(reader, "_native_frame", flaky)
    out = open_store(str(tmp_path / "out"))
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, thresholds=LOW,
                         spark=spark)
    assert summary.finished and summary.chunks == 3 and summary.rows == 1_000 and summary.quarantined_chunks == 1
    with psycopg.connect(pg_server_url) as conn:
        q = conn.execute(f"SELECT chunk, reason FROM {schema}.y_quarantine").fetchall()
    assert len(q) == 1 and q[0][0] == 2 and "Spark could not read" in q[0][1]


def test_a_customer_with_two_names_in_one_chunk_is_one_pair_with_the_greatest_name(tmp_path, spark):
    """Spark groups by the name as well (a hash aggregation needs no string aggregate); the reader folds
    the pair's rows back into one: counts and amounts summed, genders or-ed, the greatest name kept (a
    blank name counts as the id, as in the reference)."""
    from decimal import Decimal

    from txnwatch.detect.reader import read_deltas

    landing = open_store(str(tmp_path / "landing"))
    header = "transactionId,customerId,customerName,merchantId,amount,transactionType,gender,timestamp\n"
    landing.put(chunk_key(1), (header + "1,C1,Bob,M1,1.50,t,F,0\n" + "2,C1,,M1,2.25,t,M,0\n"
                               + "3,C1,Zoe,M1,3.00,t,F,0\n" + "4,C1,Ann,M2,4.00,t,F,0\n"
                               + "5,C1,Bob,M1,oops,t,F,0\n").encode())
    collected, reads = read_deltas(spark, landing, [1])
    rows = sorted(collected.to_pylist(), key=lambda r: (r["kind"], r["merchant_id"] or ""))
    assert [r.chunk for r in reads] == [1] and not any(r.unreadable for r in reads)
    assert [(r["kind"], r["customer_id"], r["merchant_id"], r["n"], r["s"], r["name"], r["has_f"], r["has_m"])
            for r in rows if r["kind"] == "d"] == [
        ("d", "C1", "M1", 3, Decimal("6.75"), "Zoe", True, True),
        ("d", "C1", "M2", 1, Decimal("4.00"), "Ann", True, False)]
    assert [(r["kind"], r["line"], r["reason"], r["raw"]) for r in rows if r["kind"] == "q"] == [
        ("q", 6, "non-numeric amount", "5,C1,Bob,M1,oops,t,F,0")]


def test_when_behind_the_next_batch_is_read_ahead_once_and_in_order(tmp_path, spark, pg_server_url, schema,
                                                                      monkeypatch):
    """With chunks waiting, each batch's Spark read after the first runs on the read-ahead thread, begun
    while the previous batch commits; every chunk is read once, the batches commit in order, and the
    detections are the reference's."""
    import threading

    from txnwatch.detect import batch, state

    rows, imp = build_rows(3_000, seed=5)
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500)  # 6 chunks, all landed before Y starts
    events: list[tuple[str, int, str]] = []
    real_read, real_commit = batch.read_deltas, state.commit_batch

    def read(spark_, store, chunks):
        events.append(("read", chunks[0], threading.current_thread().name))
        return real_read(spark_, store, chunks)

    def commit(conn, schema_, last_chunk, *args, **kwargs):
        events.append(("commit", last_chunk, threading.current_thread().name))
        return real_commit(conn, schema_, last_chunk, *args, **kwargs)

    monkeypatch.setattr(batch, "read_deltas", read)
    monkeypatch.setattr(state, "commit_batch", commit)
    out = open_store(str(tmp_path / "out"))
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=2,
                         thresholds=LOW, spark=spark)
    assert summary.finished and summary.chunks == 6
    reads = [(k, thread) for what, k, thread in events if what == "read"]
    assert [k for k, _ in reads] == [1, 3, 5]
    assert reads[0][1] == "MainThread" and all(t.startswith("txnwatch-read-ahead") for _, t in reads[1:])
    assert [k for what, k, _ in events if what == "commit"] == [2, 4, 6]
    assert_matches_reference(out, detect_store(landing, REFERENCE_KEY, LOW))
