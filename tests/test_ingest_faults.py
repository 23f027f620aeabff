"""Row-level faults stay row-level: a damaged row is quarantined and the stream goes on, unless most of a
chunk is damaged, which stops X before that chunk lands (the wrong file was probably given)."""

from __future__ import annotations

import codecs
import json

import pytest

from tests.x_data import banksim_line, ledger, parse_csv, write_banksim
from txnwatch.core.errors import TxnwatchError
from txnwatch.ingest.rows import MAX_RECORD_CHARS, RAW_KEEP_CHARS

pytestmark = pytest.mark.usefixtures("local_dir")


def landed_ids(land, k: int) -> list[str]:
    return [r[0] for r in parse_csv((land / f"chunk_{k:08d}/transactions.csv").read_bytes())[1:]]


def rejected_rows(land, k: int) -> list[list[str]]:
    rows = parse_csv((land / f"_rejected/chunk_{k:08d}.csv").read_bytes())
    assert rows[0] == ["sourceLine", "reason", "raw"]
    return rows[1:]


def test_a_row_that_is_not_utf8_is_quarantined_with_its_bytes_escaped(ingest, tmp_path):
    src = write_banksim(tmp_path / "tx.csv", 30)
    bad_line = banksim_line(12).encode().replace(b"'C1012'", b"'Caf\xe9\\C1012'")
    src.write_bytes(src.read_bytes().replace(banksim_line(12).encode(), bad_line))
    land = tmp_path / "land"
    summary = ingest(src, land, rows_per_chunk=30)
    [(line, reason, raw)] = rejected_rows(land, 1)
    assert (line, reason) == ("14", "not UTF-8 text (byte 0xe9)")
    assert raw == bad_line.decode("latin-1").replace("\\", "\\\\").replace("\u00e9", "\\xe9")
    assert codecs.escape_decode(raw.encode())[0] == bad_line
    assert landed_ids(land, 1) == [str(i) for i in range(30) if i != 12]
    assert (summary.rows, summary.rejected, summary.finished) == (29, 1, True)


def test_a_5_mb_line_is_quarantined_and_the_rows_after_it_land(ingest, tmp_path):
    huge = banksim_line(5, customer="C" + "9" * (5 * 1024 * 1024))
    land = tmp_path / "land"
    summary = ingest(write_banksim(tmp_path / "tx.csv", 30, {5: huge}), land, rows_per_chunk=30)
    [(line, reason, raw)] = rejected_rows(land, 1)
    assert line == "7"
    assert reason == (f"record too long: {len(huge) + 1} characters, over the limit of {MAX_RECORD_CHARS} "
                      f"(raw keeps the first {RAW_KEEP_CHARS})")
    assert raw == huge[:RAW_KEEP_CHARS]
    assert landed_ids(land, 1) == [str(i) for i in range(30) if i != 5]
    assert (summary.rows, summary.rejected) == (29, 1)


def test_quarantined_rows_keep_their_place_in_the_row_budget(ingest, db, schema, tmp_path):
    src = write_banksim(tmp_path / "tx.csv", 60)
    src.write_bytes(src.read_bytes().replace(banksim_line(25).encode(), b"\xff\xfe broken"))
    land = tmp_path / "land"
    ingest(src, land, rows_per_chunk=20)
    assert landed_ids(land, 2) == [str(i) for i in range(20, 40) if i != 25]
    assert landed_ids(land, 3) == [str(i) for i in range(40, 60)]
    assert ledger(db, schema, str(land.resolve())) == [(1, 20, 0), (2, 19, 1), (3, 20, 0)]
    assert json.loads((land / "_END.json").read_text()) == {"chunks": 3, "rows": 59, "rejected": 1}


def mostly_bad(tmp_path, bad_rows=range(20, 31)):
    """60 rows; chunk 2 of 20 rows holds 11 rejected rows (55%)."""
    return write_banksim(tmp_path / "tx.csv", 60, {i: banksim_line(i, amount="n/a") for i in bad_rows})


def test_a_chunk_mostly_rejected_stops_the_ingest_before_it_lands(ingest, db, schema, tmp_path):
    land = tmp_path / "land"
    with pytest.raises(TxnwatchError) as e:
        ingest(mostly_bad(tmp_path), land, rows_per_chunk=20)
    assert str(e.value).startswith("chunk 2: 11 of its 20 rows were rejected (55%, over --max-reject-share "
                                   "0.5); is source ")
    assert "First rejected: line 22, non-numeric amount: 'n/a'. Nothing of chunk 2 was landed" in str(e.value)
    assert landed_ids(land, 1) == [str(i) for i in range(20)]
    assert not (land / "chunk_00000002").exists()
    assert not (land / "_rejected").exists() and not (land / "_END.json").exists()
    assert ledger(db, schema, str(land.resolve())) == [(1, 20, 0)]


def test_the_rejected_share_that_stops_the_ingest_is_configurable(ingest, tmp_path):
    land = tmp_path / "land"
    summary = ingest(mostly_bad(tmp_path), land, rows_per_chunk=20, max_reject_share=0.6)
    assert (summary.rows, summary.rejected, summary.finished) == (49, 11, True)
    assert len(rejected_rows(land, 2)) == 11


def test_a_share_of_0_stops_at_the_first_rejected_row(ingest, tmp_path):
    with pytest.raises(TxnwatchError, match=r"chunk 1: 1 of its 20 rows were rejected \(5%"):
        ingest(mostly_bad(tmp_path, bad_rows=[3]), tmp_path / "land", rows_per_chunk=20, max_reject_share=0)


def test_a_chunk_of_fewer_than_20_rows_is_not_judged(ingest, tmp_path):
    """A short last chunk with a few bad rows says nothing about the file: they are quarantined."""
    land = tmp_path / "land"
    summary = ingest(mostly_bad(tmp_path, bad_rows=range(55, 60)), land, rows_per_chunk=50)
    assert (summary.rows, summary.rejected, summary.finished) == (55, 5, True)
    assert [r[0] for r in rejected_rows(land, 2)] == ["57", "58", "59", "60", "61"]


def test_a_share_outside_0_to_1_is_refused(ingest, tmp_path):
    with pytest.raises(TxnwatchError, match="max reject share must be between 0 and 1, got 1.5"):
        ingest(write_banksim(tmp_path / "tx.csv", 3), tmp_path / "land", max_reject_share=1.5)
