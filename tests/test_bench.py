"""`make bench`'s tool end to end on tiny data (`python -m tools.bench --quick`), so that it cannot rot: every
measure of the 100× shape (many customers, a few rows each), the Markdown table, results.json and the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _drop_schemas(db_url: str, prefix: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata "
                                            "WHERE schema_name LIKE %s", (f"{prefix}\\_%",)).fetchall()]
        for name in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.slow
@pytest.mark.parametrize("spark", ["per run", "standing"])
def test_quick_bench_reports_every_figure(tmp_path, pg_server_url, spark):
    """Y with a Spark of its own per run (spark-submit, the CLI), and as the stack runs it: a Connect
    client of a standing server."""
    prefix = f"tb{os.getpid()}"
    env = {**os.environ, "TXNWATCH_DB_URL": pg_server_url, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [sys.executable, "-m", "tools.bench", "--quick", "--scales", "100", "--work", str(tmp_path),
           "--schema-prefix", prefix, *(["--standing-spark"] if spark == "standing" else [])]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    finally:
        _drop_schemas(pg_server_url, prefix)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["spark"] == spark and (spark == "standing") == ("spark_server_up_s" in results)
    r = results["scales"]["100x"]
    assert (r["customers"], r["steps"], r["backlog"]["chunks"]) == (10_400, 3, 15)
    assert r["ready_s"] > 0 and r["backlog"]["reference_s"] > 0
    assert r["backlog"]["detections"]["PatId2"] > 0 and r["backlog"]["detections"]["PatId3"] >= 3
    assert r["cost"]["chunks"] == 15 and r["memory"]["pairs_at_end"] > 0
    assert r["memory"]["pairs_in_state"] in (None, r["memory"]["pairs_at_end"])
    assert 16 <= r["memory"]["state_bytes_per_pair"] < 1000  # two int32 codes a pair at the least
    assert r["live"]["chunks"] == 3 and r["live"]["lag_p95_s"] is not None
    restart = r["restart"]
    assert 3 <= restart["killed_after_chunk"] < 15 and restart["chunks_after_restart"] > 0
    assert restart["relaunch_ready_s"] > 0 and restart["first_batch_cost_s"] > 0
    for run in ("backlog", "live", "restart"):
        assert r[run]["matches_reference"] is True, run
        log = (tmp_path / f"detect-{run}-100x.log").read_text()
        assert ("Spark Connect client of sc://" in log) == (spark == "standing"), run
    assert "| restart.caught_up_s |" in proc.stdout
    assert (tmp_path / "per_chunk_cost.png").stat().st_size > 0
