"""Load, not only faults: X replays at 2× and 5× the default rate and Y's lag stays bounded (it does not
grow chunk after chunk), with the output exact. A short run of tools/soak.py (which `python -m
tools.soak` runs at full length for docs/benchmarks.md's figures); TXNWATCH_SOAK_CHUNKS sets the length."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reference_rules import detect_store
from tests.y_data import assert_matches_reference
from tools.soak import Bench, soak
from txnwatch.core.config import Thresholds
from txnwatch.core.landing import REFERENCE_KEY
from txnwatch.core.storage import open_store

CHUNKS = int(os.environ.get("TXNWATCH_SOAK_CHUNKS", "20"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory, pg_server_url) -> Bench:
    return Bench(tmp_path_factory.mktemp("soak"), pg_server_url)


@pytest.fixture(scope="module")
def data(bench) -> Path:
    return bench.generate(CHUNKS * 10_000)


@pytest.mark.slow
@pytest.mark.parametrize("interval", [0.5, 0.2], ids=["2x", "5x"])
def test_y_lag_stays_bounded_and_the_output_exact_when_x_runs_faster(interval, bench, data, pg_server_url):
    tag = f"t_{os.getpid()}_{str(interval).replace('.', '_')}"
    try:
        result = soak(bench, data, interval, CHUNKS, tag)
        assert len(result.lags) == CHUNKS
        print(result.summary())
        assert result.bounded, result.summary()
        ref = detect_store(open_store(result.landing), REFERENCE_KEY, Thresholds())
        assert len(ref) == result.detections > 0
        assert_matches_reference(open_store(result.output), ref)
    finally:
        import psycopg

        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS soak_{tag} CASCADE")
