"""`txnwatch report`: figures from the per-chunk metrics, JSON shape, the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from txnwatch.core.errors import TxnwatchError
from txnwatch.records.report import collect_report

LAGS = [0.41, 0.52, 0.38, 0.95, 1.7, 0.44, 0.47, 0.5, 0.61, 0.39]


@pytest.fixture
def filled(db, schema):
    t0 = datetime(2025, 7, 4, 6, 30, tzinfo=UTC)
    db.execute(f"INSERT INTO {schema}.y_checkpoint (id, landing, output, last_chunk, finished) "
               "VALUES (1, '/l', '/o', 11, true)")
    for k, lag in enumerate(LAGS, start=1):
        landed = t0 + timedelta(seconds=k)
        db.execute(f"INSERT INTO {schema}.y_chunk_metrics (chunk, rows, quarantined, landed_at, committed_at, "
                   "batch_size, detections) VALUES (%s, 10000, %s, %s, %s, %s, 0)",
                   (k, 1 if k == 3 else 0, landed, landed + timedelta(seconds=lag), 2 if k > 8 else 1))
    # An outside producer's chunk without a landing time: counted, but not in the lag figures.
    db.execute(f"INSERT INTO {schema}.y_chunk_metrics (chunk, rows, landed_at, committed_at) "
               "VALUES (11, 0, NULL, %s)", (t0 + timedelta(seconds=30),))
    db.execute(f"INSERT INTO {schema}.y_quarantine (chunk, reason) VALUES (11, 'wrong header')")
    for seq, (p, k) in enumerate([("PatId2", 1), ("PatId2", 2), ("PatId1", 4), ("PatId3", 5)], start=1):
        db.execute(f"INSERT INTO {schema}.detected_patterns (pattern_id, customer_id, merchant_id, action_type, "
                   "customer_name, chunk, seq, detection_time, y_start_time) "
                   "VALUES (%s, %s, 'M1', 'X', 'n', %s, %s, %s, %s)", (p, f"C{seq}", k, seq, t0, t0))
    db.execute(f"INSERT INTO {schema}.y_output_files (file_no, first_seq, last_seq) VALUES (1, 1, 4)")
    return schema


def test_collect_report(db, filled):
    r = collect_report(db, filled)
    assert r["chunks"] == 11 and r["rows"] == 100_000
    assert r["detections"] == {"PatId1": 1, "PatId2": 2, "PatId3": 1}
    assert r["lag_p50_s"] == pytest.approx(np.percentile(LAGS, 50), abs=1e-3)
    assert r["lag_p95_s"] == pytest.approx(np.percentile(LAGS, 95), abs=1e-3)
    assert r["lag_max_s"] == pytest.approx(1.7, abs=1e-3) and r["lag_chunks"] == 10
    assert r["quarantined_rows"] == 1 and r["quarantined_chunks"] == 1
    assert r["files"] == 1 and r["finished"] and r["max_batch_chunks"] == 2


def test_cli_json_and_plot(pg_server_url, filled, tmp_path):
    png = tmp_path / "lag.png"
    proc = subprocess.run([sys.executable, "-m", "txnwatch", "report", "--db", pg_server_url, "--schema", filled,
                           "--json", "--plot", str(png)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"chunks", "rows", "detections", "lag_p50_s", "lag_p95_s", "lag_max_s"} <= data.keys()
    assert data["detections"]["PatId2"] == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    text = subprocess.run([sys.executable, "-m", "txnwatch", "report", "--db", pg_server_url, "--schema", filled],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "p95" in text.stdout and "PatId1=1" in text.stdout


def test_report_on_an_empty_schema_is_one_clear_error(pg_server_url, schema):
    from txnwatch.core.db import connect

    with connect(pg_server_url, autocommit=True) as conn, pytest.raises(TxnwatchError, match="has no detection"):
        collect_report(conn, schema)
