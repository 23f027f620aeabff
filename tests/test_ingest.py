"""Mechanism X in-process: the landing-zone contract of SPEC section 3 against real PostgreSQL and S3."""

from __future__ import annotations

import json
import logging
import threading

import boto3
import pandas as pd
import pytest

from tests.helpers import wait_for
from tests.x_data import (
    BANKSIM_HEADER,
    banksim_line,
    ledger,
    parse_csv,
    snapshot,
    write_banksim,
    write_gzip,
)
from txnwatch.core.errors import TxnwatchError
from txnwatch.core.landing import CANONICAL_COLUMNS, IMPORTANCE_COLUMNS
from txnwatch.ingest.job import publish_importance

CANONICAL = list(CANONICAL_COLUMNS)


pytestmark = pytest.mark.usefixtures("local_dir")


def test_real_sample_lands_as_one_canonical_chunk(ingest, sample_csv, tmp_path):
    land = tmp_path / "land"
    summary = ingest(sample_csv, land, rows_per_chunk=10_000)
    rows = parse_csv((land / "chunk_00000001/transactions.csv").read_bytes())
    assert rows[0] == CANONICAL
    assert len(rows) == 1 + 10_000
    src = pd.read_csv(sample_csv, quotechar="'", dtype=str)
    got = pd.DataFrame(rows[1:], columns=CANONICAL)
    assert got["transactionId"].tolist() == [str(i) for i in range(10_000)]
    assert got["customerId"].tolist() == src["customer"].tolist()
    assert got["customerName"].tolist() == src["customer"].tolist()
    assert got["merchantId"].tolist() == src["merchant"].tolist()
    assert got["amount"].tolist() == src["amount"].tolist()
    assert got["transactionType"].tolist() == src["category"].tolist()
    assert got["gender"].tolist() == src["gender"].tolist()
    assert got["timestamp"].tolist() == src["step"].tolist()
    assert "'" not in (land / "chunk_00000001/transactions.csv").read_text()
    assert json.loads((land / "_END.json").read_text()) == {"chunks": 1, "rows": 10_000, "rejected": 0}
    assert (summary.chunks_landed, summary.rows, summary.finished) == (1, 10_000, True)


def test_chunk_k_holds_data_rows_k_minus_1_times_r_onwards(ingest, tmp_path):
    land = tmp_path / "land"
    ingest(write_banksim(tmp_path / "tx.csv", 10), land, rows_per_chunk=4)
    ids = [[r[0] for r in parse_csv((land / f"chunk_0000000{k}/transactions.csv").read_bytes())[1:]]
           for k in (1, 2, 3)]
    assert ids == [["0", "1", "2", "3"], ["4", "5", "6", "7"], ["8", "9"]]
    assert not (land / "chunk_00000004").exists()


def test_chunks_use_standard_csv_quoting_and_unix_line_endings(ingest, tmp_path):
    src = tmp_path / "tx.csv"
    src.write_text(",".join(CANONICAL) + "\r\n" + '7,C1,"Rao, Asha",M1,5.5,food,F,2024-01-01 10:00\r\n')
    ingest(src, tmp_path / "land")
    data = (tmp_path / "land/chunk_00000001/transactions.csv").read_bytes()
    assert data == (",".join(CANONICAL) + '\n7,C1,"Rao, Asha",M1,5.5,food,F,2024-01-01 10:00\n').encode()


def test_bad_rows_are_quarantined_with_line_and_reason(ingest, tmp_path):
    bad = {1: "0,'C1','3','F','28007','M1','28007','es_food',4.5",
           2: banksim_line(2, amount="'12,5'"),
           4: banksim_line(4, customer=""),
           6: banksim_line(6, merchant=""),
           7: banksim_line(7, amount="abc")}
    land = tmp_path / "land"
    summary = ingest(write_banksim(tmp_path / "tx.csv", 8, bad), land, rows_per_chunk=4)
    assert parse_csv((land / "_rejected/chunk_00000001.csv").read_bytes()) == [
        ["sourceLine", "reason", "raw"],
        ["3", "wrong field count: 9, expected 10", bad[1]],
        ["4", "non-numeric amount: '12,5'", bad[2]],
    ]
    assert parse_csv((land / "_rejected/chunk_00000002.csv").read_bytes()) == [
        ["sourceLine", "reason", "raw"],
        ["6", "empty customer id", bad[4]],
        ["8", "empty merchant id", bad[6]],
        ["9", "non-numeric amount: 'abc'", bad[7]],
    ]
    kept = [[r[0] for r in parse_csv((land / f"chunk_0000000{k}/transactions.csv").read_bytes())[1:]]
            for k in (1, 2)]
    assert kept == [["0", "3"], ["5"]]
    assert summary.rejected == 5
    assert json.loads((land / "_END.json").read_text()) == {"chunks": 2, "rows": 3, "rejected": 5}


def test_chunk_without_bad_rows_has_no_rejected_file(ingest, tmp_path):
    land = tmp_path / "land"
    ingest(write_banksim(tmp_path / "tx.csv", 6), land, rows_per_chunk=3)
    assert not (land / "_rejected").exists()


def test_importance_is_published_normalised_before_chunk_1(ingest, tmp_path):
    land = tmp_path / "land"
    ingest(write_banksim(tmp_path / "tx.csv", 3), land, max_chunks=1, rows_per_chunk=1)
    ref = land / "_reference/customer_importance.csv"
    assert parse_csv(ref.read_bytes()) == [list(IMPORTANCE_COLUMNS), ["C1000", "M0", "es_food", "0.5"],
                                           ["C1001", "M1", "es_food", "2.25"]]
    assert ref.stat().st_mtime <= (land / "chunk_00000001/transactions.csv").stat().st_mtime


def test_importance_published_ahead_of_the_producer_is_not_published_twice(ingest, importance, tmp_path):
    land = tmp_path / "land"
    uri = publish_importance(str(importance), str(land))
    first = (land / "_reference/customer_importance.csv").read_bytes()
    assert uri.endswith("_reference/customer_importance.csv")
    ingest(write_banksim(tmp_path / "tx.csv", 3), land, max_chunks=1, rows_per_chunk=1)
    assert (land / "_reference/customer_importance.csv").read_bytes() == first


def test_importance_without_merchant_column_publishes_an_empty_merchant(ingest, tmp_path):
    imp = tmp_path / "imp.csv"
    imp.write_text("customerId,transactionType,weight\nC1,es_food,3\n")
    ingest(write_banksim(tmp_path / "tx.csv", 2), tmp_path / "land", importance=imp)
    assert (tmp_path / "land/_reference/customer_importance.csv").read_text() == \
        "customerId,merchantId,transactionType,weight\nC1,,es_food,3\n"


def test_each_chunk_is_committed_to_the_ledger_and_checkpoint(ingest, db, schema, tmp_path):
    land = tmp_path / "land"
    ingest(write_banksim(tmp_path / "tx.csv", 7, {5: "junk"}), land, rows_per_chunk=3)
    key = str(land.resolve())
    assert ledger(db, schema, key) == [(1, 3, 0), (2, 2, 1), (3, 1, 0)]
    cp = db.execute(f"SELECT last_chunk, rows_landed, rejected, finished, rows_per_chunk "
                    f"FROM {schema}.x_checkpoint WHERE landing = %s", (key,)).fetchone()
    assert cp == (3, 6, 1, True, 3)
    landed = db.execute(f"SELECT extract(epoch FROM landed_at) FROM {schema}.x_chunks "
                        f"WHERE landing = %s AND chunk = 2", (key,)).fetchone()[0]
    assert abs(float(landed) - (land / "chunk_00000002/transactions.csv").stat().st_mtime) < 0.5


def test_rerunning_a_finished_ingest_is_a_no_op_that_says_so(ingest, tmp_path, caplog):
    land = tmp_path / "land"
    src = write_banksim(tmp_path / "tx.csv", 5)
    ingest(src, land, rows_per_chunk=2)
    before = {p: p.stat().st_mtime_ns for p in land.rglob("*")}
    with caplog.at_level(logging.INFO, logger="txnwatch.ingest"):
        summary = ingest(src, land, rows_per_chunk=2)
    assert summary.already_complete and summary.chunks_landed == 0
    assert "already complete" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in land.rglob("*")} == before


@pytest.mark.parametrize("compression", ["plain", "gzip"])
def test_stopped_ingest_resumes_at_the_next_chunk(compression, ingest, db, schema, tmp_path):
    src = write_banksim(tmp_path / "tx.csv", 40, {13: "bad"})
    if compression == "gzip":
        src = write_gzip(tmp_path / "tx.csv.gz", src)
    ingest(src, tmp_path / "fresh", rows_per_chunk=4)
    land = tmp_path / "land"
    stop = threading.Event()
    first = []
    worker = threading.Thread(
        target=lambda: first.append(ingest(src, land, rows_per_chunk=4, interval=0.2, stop=stop)))
    worker.start()
    wait_for(lambda: (land / "chunk_00000003/transactions.csv").exists(), what="chunk 3")
    stop.set()
    worker.join(10)
    assert first[0].stopped and not first[0].finished
    assert not (land / "_END.json").exists()
    second = ingest(src, land, rows_per_chunk=4)
    assert second.chunks_landed == 10 - first[0].last_chunk
    assert snapshot(land) == snapshot(tmp_path / "fresh")
    assert [r[0] for r in ledger(db, schema, str(land.resolve()))] == list(range(1, 11))


def test_resume_with_another_rows_per_chunk_is_refused(ingest, tmp_path):
    src = write_banksim(tmp_path / "tx.csv", 6)
    ingest(src, tmp_path / "land", rows_per_chunk=2, max_chunks=1)
    with pytest.raises(TxnwatchError, match="rows-per-chunk 2, not 3"):
        ingest(src, tmp_path / "land", rows_per_chunk=3)


def test_resume_with_another_source_file_is_refused(ingest, tmp_path, db, schema):
    land = tmp_path / "land"
    stop = threading.Event()
    stop.set()  # checkpoint created, nothing landed
    ingest(write_banksim(tmp_path / "a.csv", 6), land, rows_per_chunk=2, stop=stop)
    with pytest.raises(TxnwatchError, match="different source file"):
        ingest(write_banksim(tmp_path / "b.csv", 7), land, rows_per_chunk=2)


def test_max_chunks_replays_the_first_k_chunks_and_ends_the_stream(ingest, tmp_path):
    land = tmp_path / "land"
    summary = ingest(write_banksim(tmp_path / "tx.csv", 10), land, rows_per_chunk=2, max_chunks=3)
    assert sorted(p.name for p in land.glob("chunk_*")) == ["chunk_00000001", "chunk_00000002",
                                                             "chunk_00000003"]
    assert json.loads((land / "_END.json").read_text()) == {"chunks": 3, "rows": 6, "rejected": 0}
    assert summary.finished


def test_a_chunk_with_other_content_is_never_overwritten(ingest, tmp_path):
    land = tmp_path / "land"
    (land / "chunk_00000001").mkdir(parents=True)
    (land / "chunk_00000001/transactions.csv").write_text("something else\n")
    with pytest.raises(TxnwatchError, match="already exists with different content"):
        ingest(write_banksim(tmp_path / "tx.csv", 4), land, rows_per_chunk=2)
    assert (land / "chunk_00000001/transactions.csv").read_text() == "something else\n"


def test_only_one_ingest_writes_a_landing_zone_at_a_time(ingest, pg_server_url, schema, tmp_path):
    from txnwatch.core.db import connect

    land = tmp_path / "land"
    with connect(pg_server_url, autocommit=True) as other:
        key = f"txnwatch-ingest:{schema}:{land.resolve()}"
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        with pytest.raises(TxnwatchError, match="another ingest is already writing"):
            ingest(write_banksim(tmp_path / "tx.csv", 4), land)


def test_falling_behind_lands_without_sleeping_and_reports_lag(ingest, db, schema, tmp_path, caplog):
    land = tmp_path / "land"
    with caplog.at_level(logging.INFO, logger="txnwatch.ingest"):
        summary = ingest(write_banksim(tmp_path / "tx.csv", 30), land, rows_per_chunk=1, interval=0.0001)
    lags = [r[0] for r in db.execute(f"SELECT lag_s FROM {schema}.x_chunks ORDER BY chunk")]
    assert lags[-1] > lags[0] and summary.max_lag_s == pytest.approx(max(lags))
    assert "chunk 30: rows=1 rejected=0 lag=" in caplog.text


def test_landing_on_s3(ingest, s3_bucket, db, schema, tmp_path):
    src = write_banksim(tmp_path / "tx.csv", 5, {1: "x"})
    summary = ingest(src, f"s3://{s3_bucket}/run1", rows_per_chunk=2)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(keys) == ["run1/_END.json", "run1/_reference/customer_importance.csv",
                            "run1/_rejected/chunk_00000001.csv", "run1/chunk_00000001/transactions.csv",
                            "run1/chunk_00000002/transactions.csv", "run1/chunk_00000003/transactions.csv"]
    assert summary.landing == f"s3://{s3_bucket}/run1"
    assert [r[0] for r in ledger(db, schema, summary.landing)] == [1, 2, 3]


def test_landing_in_a_missing_bucket_is_one_clear_error(ingest, s3_endpoint, tmp_path):
    with pytest.raises(TxnwatchError, match="bucket 'no-such-bucket' does not exist"):
        ingest(write_banksim(tmp_path / "tx.csv", 2), "s3://no-such-bucket/land")


def test_source_over_http(ingest, tmp_path):
    from tests.x_http import serve

    src = write_banksim(tmp_path / "tx.csv", 5)
    with serve({"/tx.csv": src}) as (base, _):
        ingest(f"{base}/tx.csv", tmp_path / "land", rows_per_chunk=5)
    assert len(parse_csv((tmp_path / "land/chunk_00000001/transactions.csv").read_bytes())) == 6


def test_header_only_source_is_one_clear_error(ingest, tmp_path):
    src = tmp_path / "tx.csv"
    src.write_text(BANKSIM_HEADER + "\n")
    with pytest.raises(TxnwatchError, match="has a header but no data rows"):
        ingest(src, tmp_path / "land")


def test_resume_into_a_wiped_landing_zone_is_refused(ingest, tmp_path):
    import shutil

    src, land = write_banksim(tmp_path / "tx.csv", 6), tmp_path / "land"
    stop = threading.Event()
    worker = threading.Thread(target=lambda: ingest(src, land, rows_per_chunk=2, interval=0.2, stop=stop))
    worker.start()
    wait_for(lambda: (land / "chunk_00000001/transactions.csv").exists(), what="chunk 1")
    stop.set()
    worker.join(10)
    shutil.rmtree(land)
    with pytest.raises(TxnwatchError, match=r"chunk \d+ was landed .* but it is not there"):
        ingest(src, land, rows_per_chunk=2)


def test_source_from_a_google_drive_id(ingest, tmp_path, monkeypatch):
    from tests.x_http import serve
    from txnwatch.ingest.sources import GDRIVE_BASE_ENV

    src = write_banksim(tmp_path / "tx.csv", 5)
    drive_id = "1Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
    with serve({}, drive={drive_id: src}) as (base, _):
        monkeypatch.setenv(GDRIVE_BASE_ENV, base)
        summary = ingest(drive_id, tmp_path / "land", rows_per_chunk=5)
    assert (summary.rows, summary.finished) == (5, True)


def test_unwritable_landing_zone_is_one_clear_error(ingest, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(TxnwatchError, match=f"file system error: Not a directory .*{blocker.name}"):
        ingest(write_banksim(tmp_path / "tx.csv", 2), blocker / "land")
