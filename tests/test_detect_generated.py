"""The whole product path on generated data: `generate` (both layouts) -> `run_ingest` -> the detection
job, compared with the reference implementation; the lag comes from X's ledger."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from tests.reference_rules import detect_store
from tests.y_data import assert_matches_reference
from txnwatch.core.config import Thresholds
from txnwatch.core.landing import REFERENCE_KEY
from txnwatch.core.storage import open_store
from txnwatch.detect.job import run_detect
from txnwatch.generate import generate, scaled_thresholds
from txnwatch.ingest.job import run_ingest

ROWS = 60_000


@pytest.mark.parametrize("layout", ["banksim", "canonical"])
def test_generated_data_set_equals_reference(tmp_path, spark, pg_server_url, schema, layout):
    files = generate(ROWS, seed=11, layout=layout, out_dir=tmp_path / "gen")
    landing = open_store(str(tmp_path / "landing"))
    run_ingest(str(files.transactions), str(files.importance), landing.url, pg_server_url, schema,
               rows_per_chunk=5_000, interval=0)
    # Volume and gender bars scaled to the data set; CHILD and UPGRADE loosened so that they fire often.
    th = dataclasses.replace(Thresholds(**scaled_thresholds(ROWS)), child_min_txns=8, upgrade_weight_percentile=0.2)
    ref = detect_store(landing, REFERENCE_KEY, th)
    assert {d.pattern_id for d in ref} == {"PatId1", "PatId2", "PatId3"} and len(ref) > 50, ref
    out = open_store(str(tmp_path / "out"))
    summary = run_detect(landing.url, out.url, pg_server_url, schema, until_end=True, max_batch_chunks=2,
                         thresholds=th, spark=spark)
    assert summary.finished and summary.rows == ROWS
    assert_matches_reference(out, ref)
    with psycopg.connect(pg_server_url) as conn:
        missing = conn.execute(
            f"SELECT count(*) FROM {schema}.y_chunk_metrics y JOIN {schema}.x_chunks x USING (chunk) "
            "WHERE y.landed_at IS DISTINCT FROM x.landed_at").fetchone()[0]
        n = conn.execute(f"SELECT count(*) FROM {schema}.y_chunk_metrics").fetchone()[0]
    assert n == ROWS // 5_000 and missing == 0
