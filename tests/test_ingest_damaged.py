"""Row-level faults stay row-level in X: a damaged row is quarantined with its reason and its raw bytes
escaped, and the stream goes on; a chunk that is mostly rejected stops the ingest with one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from x_data import BANKSIM_HEADER, banksim_line, parse_csv, write_importance

from txnwatch.errors import TxnwatchError
from txnwatch.ingest import run_ingest


@pytest.fixture(autouse=True)
def local_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TXNWATCH_LOCAL_DIR", str(tmp_path / "local"))


def write_lines(path, lines: list[bytes]) -> str:
    path.write_bytes(b"\n".join([BANKSIM_HEADER.encode(), *lines]) + b"\n")
    return str(path)


def good(i: int) -> bytes:
    return banksim_line(i).encode()


def test_a_non_utf8_byte_rejects_only_its_row(tmp_path, pg_server_url, schema):
    damaged = banksim_line(3, customer="C\xe9").encode("latin-1")  # one byte 0xE9: not UTF-8
    src = write_lines(tmp_path / "tx.csv", [good(i) for i in range(3)] + [damaged] + [good(i) for i in range(4, 10)])
    land = tmp_path / "land"
    summary = run_ingest(src, str(write_importance(tmp_path / "imp.csv")), str(land), pg_server_url, schema,
                         rows_per_chunk=5, interval=0)
    assert (summary.rows, summary.rejected, summary.finished) == (9, 1, True)
    rejected = parse_csv((land / "_rejected/chunk_00000001.csv").read_bytes())
    assert rejected[1] == ["5", "not UTF-8 text", damaged.decode("latin-1").replace("\xe9", "\\xe9")]
    kept = [r[0] for r in parse_csv((land / "chunk_00000001/transactions.csv").read_bytes())[1:]]
    assert kept == ["0", "1", "2", "4"]


def test_an_oversized_field_rejects_only_its_row(tmp_path, pg_server_url, schema):
    huge = b"0,'C1','3','F','28007','M1','28007','es_food'," + b"9" * 200_000 + b",0"
    src = write_lines(tmp_path / "tx.csv", [good(0), huge] + [good(i) for i in range(2, 10)])
    land = tmp_path / "land"
    summary = run_ingest(src, str(write_importance(tmp_path / "imp.csv")), str(land), pg_server_url, schema,
                         rows_per_chunk=5, interval=0)
    assert (summary.rows, summary.rejected) == (9, 1)
    line, reason, raw = parse_csv((land / "_rejected/chunk_00000001.csv").read_bytes())[1]
    assert line == "3" and reason.startswith("unreadable CSV: field larger than field limit")
    assert reason.endswith(f"truncated to 4096 of {len(huge)} characters") and raw == huge.decode()[:4096]


def test_a_mostly_rejected_chunk_stops_with_one_line(tmp_path, pg_server_url, schema):
    src = write_lines(tmp_path / "tx.csv", [b"this,is,not,the,right,file"] * 8 + [good(i) for i in range(2)])
    land = tmp_path / "land"
    with pytest.raises(TxnwatchError, match=r"chunk 1: 8 of 10 rows rejected \(more than 50%\).*right file"):
        run_ingest(src, str(write_importance(tmp_path / "imp.csv")), str(land), pg_server_url, schema,
                   rows_per_chunk=10, interval=0)
    assert not (land / "chunk_00000001").exists()


def test_the_rejected_share_is_configurable_on_the_command_line(tmp_path, pg_server_url, schema):
    src = write_lines(tmp_path / "tx.csv", [b"bad,row"] * 3 + [good(i) for i in range(7)])
    args = [sys.executable, "-m", "txnwatch", "ingest", "--source", src, "--importance",
            str(write_importance(tmp_path / "imp.csv")), "--landing", str(tmp_path / "land"), "--db", pg_server_url,
            "--schema", schema, "--interval", "0", "--rows-per-chunk", "10", "--max-rejected-share", "0.2"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TXNWATCH_LOCAL_DIR": str(tmp_path / "local")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("txnwatch ingest: error: chunk 1: 3 of 10 rows rejected")
