"""Pacing: chunk k is due at start + (k - 1) * interval, and lateness never accumulates."""

from __future__ import annotations

import pytest

from tests.x_data import write_banksim, write_importance
from txnwatch.ingest.job import run_ingest


@pytest.fixture(autouse=True)
def local_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TXNWATCH_LOCAL_DIR", str(tmp_path / "local"))


def test_eight_chunks_at_one_second_land_one_second_apart_without_drift(tmp_path, pg_server_url, schema, db):
    src, imp = write_banksim(tmp_path / "tx.csv", 80), write_importance(tmp_path / "imp.csv")
    land = tmp_path / "land"
    run_ingest(str(src), str(imp), str(land), pg_server_url, schema, rows_per_chunk=10, interval=1.0)
    times = [float(t) for (t,) in db.execute(
        f"SELECT extract(epoch FROM landed_at) FROM {schema}.x_chunks WHERE landing = %s ORDER BY chunk",
        (str(land.resolve()),))]
    assert len(times) == 8
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(0.75 <= g <= 1.25 for g in gaps), gaps
    assert abs((times[-1] - times[0]) - 7.0) < 0.1, times
