"""Property-based evidence for Y's incremental rules: random small streams (customers, merchants,
genders, amounts, weights with ties, scaled-down thresholds) against the independent reference.

Two levels: the in-memory state alone, with many examples, fed deltas aggregated here in plain Python
in random batch splits; and the whole job (Spark + Postgres + files) with fewer examples, random batch
splits and restarts that reload the state from Postgres between batches."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reference_rules import detect, weights_from_csv
from tests.y_data import assert_matches_reference, csv_bytes, land
from txnwatch.core.config import Thresholds
from txnwatch.core.db import Link, init_schema
from txnwatch.core.landing import CANONICAL_COLUMNS, IMPORTANCE_COLUMNS
from txnwatch.core.storage import open_store
from txnwatch.detect import state
from txnwatch.detect.batch import Batches, DetectSummary
from txnwatch.detect.live_state import LiveState
from txnwatch.detect.output import write_pending
from txnwatch.detect.shapes import DELTA
from txnwatch.detect.weights import Weights

Y_START = datetime(2025, 7, 4, tzinfo=UTC)
TYPES = ["es_food", "es_bar", "es_health"]


@st.composite
def streams(draw, max_rows: int = 160):
    """(chunks of rows, importance rows, thresholds, batch split sizes)."""
    customers = [f"C{i}" for i in range(draw(st.integers(1, 10)))]
    merchants = [f"M{i}" for i in range(draw(st.integers(1, 4)))]
    gender = {c: draw(st.sampled_from("FFMMEU")) for c in customers}
    rows_per_chunk = draw(st.integers(1, 25))
    n_rows = draw(st.integers(1, max_rows))
    rows = []
    for i in range(n_rows):
        c = draw(st.sampled_from(customers))
        amount = draw(st.sampled_from(["1.00", "9.99", "10.00", "10.01", "20.00", "23.00", "30.50"]))
        name = draw(st.sampled_from(["", f"N{c}", f"N{c} Jr"]))
        rows.append([str(i), c, name, draw(st.sampled_from(merchants)), amount, "es_food", gender[c], "0"])
    chunks = [rows[i:i + rows_per_chunk] for i in range(0, len(rows), rows_per_chunk)]
    imp = []
    for c in customers:
        for m in draw(st.lists(st.sampled_from([*merchants, ""]), max_size=3, unique=True)):
            for t in draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True)):
                imp.append([c, m, t, draw(st.sampled_from(["0.5", "1", "1", "2", "3"]))])
    th = Thresholds(upgrade_min_merchant_txns=draw(st.integers(0, 40)),
                    upgrade_count_percentile=draw(st.sampled_from([0.5, 0.75, 0.9, 1.0])),
                    upgrade_weight_percentile=draw(st.sampled_from([0.0, 0.1, 0.3, 0.5])),
                    child_min_txns=draw(st.integers(1, 6)), child_max_avg_amount=draw(st.sampled_from([10.0, 23.0])),
                    dei_min_female_customers=draw(st.integers(0, 3)))
    splits = draw(st.lists(st.integers(1, 4), min_size=len(chunks), max_size=len(chunks)))
    return chunks, imp, th, splits


def _batches(n_chunks: int, splits: list[int]) -> list[list[int]]:
    out, k = [], 1
    for size in splits:
        if k > n_chunks:
            break
        out.append(list(range(k, min(k + size, n_chunks + 1))))
        k += size
    return out


def _deltas(chunks: list[list[list[str]]], ks: list[int]) -> pa.Table:
    """What Spark's aggregation yields for these chunks, computed here in plain Python."""
    agg: dict = defaultdict(lambda: [0, Decimal(0), "", False, False])
    for k in ks:
        for _, c, name, m, amount, _, g, _ in chunks[k - 1]:
            a = agg[(k, c, m)]
            a[0] += 1
            a[1] += Decimal(amount)
            a[2] = max(a[2], name or c)
            a[3] |= g == "F"
            a[4] |= g == "M"
    keys = sorted(agg)
    return pa.table({"chunk": [k for k, _, _ in keys], "customer_id": [c for _, c, _ in keys],
                     "merchant_id": [m for _, _, m in keys], "n": [agg[x][0] for x in keys],
                     "s": pa.array([agg[x][1] for x in keys], pa.decimal128(38, 10)),
                     "name": [agg[x][2] for x in keys], "has_f": [agg[x][3] for x in keys],
                     "has_m": [agg[x][4] for x in keys]}, schema=DELTA)


def _expected(chunks, imp, th) -> list[tuple]:
    ref = detect([csv_bytes(CANONICAL_COLUMNS, rows) for rows in chunks], csv_bytes(IMPORTANCE_COLUMNS, imp), th)
    return [(d.chunk, d.pattern_id, d.customer_id, d.merchant_id, d.customer_name) for d in ref]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_live_state_in_random_batches_equals_reference(stream):
    chunks, imp, th, splits = stream
    weights = Weights.from_pairs(*weights_from_csv(csv_bytes(IMPORTANCE_COLUMNS, imp)))
    live = LiveState(th, lambda: weights)
    found = []
    for batch in _batches(len(chunks), splits):
        found += [(d.chunk, d.pattern_id, d.customer_id, d.merchant_id, d.customer_name)
                  for d in live.apply_batch(_deltas(chunks, batch)).matches]
    assert found == _expected(chunks, imp, th)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(stream=streams(max_rows=120), restarts=st.lists(st.booleans(), min_size=8, max_size=8))
def test_job_in_random_batches_with_restarts_equals_reference(tmp_path_factory, spark, pg_server_url, stream,
                                                              restarts):
    """Through Spark, Postgres and the files; a restart (a new batcher) loads the state from Postgres."""
    chunks, imp, th, splits = stream
    work = tmp_path_factory.mktemp("prop")
    landing, output = open_store(str(work / "landing")), open_store(str(work / "out"))
    land(landing, [r for rows in chunks for r in rows], imp, len(chunks[0]))
    schema = f"p_{uuid.uuid4().hex[:12]}"
    link = Link(pg_server_url, autocommit=True)
    conn = link.conn
    try:
        init_schema(conn, schema)
        state.ensure_checkpoint(conn, schema, landing.url, output.url)
        batcher = None
        for i, batch in enumerate(_batches(len(chunks), splits)):
            if batcher is None or restarts[i % len(restarts)]:
                batcher = Batches(spark, link, schema, landing, th, y_start=Y_START)
            batcher.run(batch, DetectSummary())
            write_pending(conn, schema, output, final=False)
        write_pending(conn, schema, output, final=True)
        ref = detect([csv_bytes(CANONICAL_COLUMNS, rows) for rows in chunks], csv_bytes(IMPORTANCE_COLUMNS, imp), th)
        assert_matches_reference(output, ref)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        link.close()

