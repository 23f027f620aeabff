"""Y's state in PostgreSQL: the job lock, the checkpoint, prior state reads and the per-batch commit.

Everything a batch changes (running state, detections, metrics, quarantine entries, checkpoint) is
written in one transaction that starts by locking the checkpoint row and checking that the batch
follows it, so re-applying a committed chunk is a no-op. The rules themselves run in Spark; this
module only moves data in and out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pyarrow as pa

from txnwatch.detect.asof import Prior
from txnwatch.errors import TxnwatchError

log = logging.getLogger("txnwatch.detect")


def acquire_job_lock(conn: psycopg.Connection, schema: str) -> None:
    """A session advisory lock per schema: two detection jobs on one schema would double-apply chunks."""
    got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"txnwatch-y:{schema}",)).fetchone()[0]
    if not got:
        raise TxnwatchError(f"another detection job is already running on schema {schema!r}")


def ensure_checkpoint(conn: psycopg.Connection, schema: str, landing: str, output: str) -> tuple[int, bool]:
    """(last_chunk, finished) of this schema's Y checkpoint, created on first use.

    A schema tracks one landing zone and one output location: pointing it at others would mix two
    streams' state, so that is refused.
    """
    with conn.transaction():
        conn.execute(f"INSERT INTO {schema}.y_checkpoint (id, landing, output) VALUES (1, %s, %s) "
                     "ON CONFLICT (id) DO NOTHING", (landing, output))
        row = conn.execute(f"SELECT landing, output, last_chunk, finished FROM {schema}.y_checkpoint "
                           "WHERE id = 1").fetchone()
    if (row[0], row[1]) != (landing, output):
        raise TxnwatchError(f"schema {schema!r} already tracks landing {row[0]} and output {row[1]}; "
                            "use another --schema for another stream")
    return row[2], row[3]


def mark_started(conn: psycopg.Connection, schema: str, y_start: datetime) -> None:
    """A new run: not ready until its Spark session is warm (readers wait for ready_at)."""
    conn.execute(f"UPDATE {schema}.y_checkpoint SET y_start_time = %s, ready_at = NULL, heartbeat_at = now() "
                 "WHERE id = 1", (y_start,))


def mark_ready(conn: psycopg.Connection, schema: str) -> None:
    """The readiness mark: from now on a landed chunk is picked up within the poll interval."""
    conn.execute(f"UPDATE {schema}.y_checkpoint SET ready_at = now(), heartbeat_at = now() WHERE id = 1")


def heartbeat(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f"UPDATE {schema}.y_checkpoint SET heartbeat_at = now() WHERE id = 1")


def landed_times(conn: psycopg.Connection, schema: str, landing: str, chunks: list[int]) -> dict[int, datetime]:
    rows = conn.execute(f"SELECT chunk, landed_at FROM {schema}.x_chunks WHERE landing = %s AND chunk = ANY(%s)",
                        (landing, chunks)).fetchall()
    return {k: t for k, t in rows}


_TEMP_DDL = """
CREATE TEMP TABLE IF NOT EXISTS y_batch_delta (
    chunk integer, customer_id text, merchant_id text, n bigint, s numeric, name text,
    has_f boolean, has_m boolean
) ON COMMIT DELETE ROWS
"""


def begin_batch(conn: psycopg.Connection, schema: str, first_chunk: int) -> bool:
    """Inside an open transaction: lock the checkpoint; False if this batch was already committed."""
    last = conn.execute(f"SELECT last_chunk FROM {schema}.y_checkpoint WHERE id = 1 FOR UPDATE").fetchone()[0]
    if last >= first_chunk:
        return False
    if last != first_chunk - 1:
        raise TxnwatchError(f"checkpoint is at chunk {last} but the batch starts at {first_chunk}")
    return True


# The batch's per-chunk deltas as the reader collects them and stage_deltas copies them.
DELTA_ARROW = pa.schema([
    ("chunk", pa.int32()), ("customer_id", pa.string()), ("merchant_id", pa.string()), ("n", pa.int64()),
    ("s", pa.decimal128(38, 10)), ("name", pa.string()), ("has_f", pa.bool_()), ("has_m", pa.bool_()),
])


def stage_deltas(conn: psycopg.Connection, deltas: pa.Table) -> None:
    """Copy the batch's per-chunk deltas into a temp table: the prior-state reads and upserts join it."""
    conn.execute(_TEMP_DDL)
    cols = DELTA_ARROW.names
    data = deltas.select(cols).to_pydict()
    with conn.cursor().copy(f"COPY y_batch_delta ({', '.join(cols)}) FROM STDIN") as cp:
        for row in zip(*(data[c] for c in cols), strict=True):
            cp.write_row(row)


def read_prior(conn: psycopg.Connection, schema: str, volume_threshold: int) -> Prior:
    """The state the rules need, read inside the batch's transaction.

    Full customer lists only for merchants that can pass PatId1's volume threshold by the end of the
    batch (N before + the batch's rows); for the others only the touched pairs (PatId2 needs no more).
    """
    merchants = conn.execute(f"""
        SELECT d.merchant_id, coalesce(t.txn_count, 0), d.dn,
               (SELECT count(*) FROM {schema}.merchant_gender_customers g
                 WHERE g.merchant_id = d.merchant_id AND g.gender = 'F'),
               (SELECT count(*) FROM {schema}.merchant_gender_customers g
                 WHERE g.merchant_id = d.merchant_id AND g.gender = 'M')
        FROM (SELECT merchant_id, sum(n) AS dn FROM y_batch_delta GROUP BY merchant_id) d
        LEFT JOIN {schema}.merchant_txn_count t USING (merchant_id)""").fetchall()
    full = sorted(m for m, total0, dn, _, _ in merchants if total0 + dn > volume_threshold)
    stats = conn.execute(f"""
        SELECT s.customer_id, s.merchant_id, s.txn_count, s.amount_sum, s.customer_name
        FROM {schema}.customer_txn_stats s WHERE s.merchant_id = ANY(%(full)s)
        UNION ALL
        SELECT s.customer_id, s.merchant_id, s.txn_count, s.amount_sum, s.customer_name
        FROM {schema}.customer_txn_stats s
        JOIN (SELECT DISTINCT merchant_id, customer_id FROM y_batch_delta) d USING (merchant_id, customer_id)
        WHERE NOT (s.merchant_id = ANY(%(full)s))""", {"full": full}).fetchall()
    gender = conn.execute(f"""
        SELECT g.merchant_id, g.gender, g.customer_id FROM {schema}.merchant_gender_customers g
        JOIN (SELECT DISTINCT merchant_id, customer_id FROM y_batch_delta) d USING (merchant_id, customer_id)
        """).fetchall()
    return Prior(stats=stats, merchants=[(m, t, f, mm) for m, t, _, f, mm in merchants], gender=gender,
                 full_merchants=set(full))


@dataclass
class Detection:
    chunk: int
    pattern_id: str
    customer_id: str
    merchant_id: str
    customer_name: str


def new_detections(conn: psycopg.Connection, schema: str, matches: list[Detection]) -> list[Detection]:
    """The matches never reported before, in detection order (chunk, patternId, merchantId, customerId)."""
    if not matches:
        return []
    seen = set(conn.execute(
        f"SELECT pattern_id, customer_id, merchant_id FROM {schema}.detected_patterns "
        "WHERE (pattern_id, customer_id, merchant_id) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
        ([d.pattern_id for d in matches], [d.customer_id for d in matches],
         [d.merchant_id for d in matches])).fetchall())
    fresh = [d for d in matches if (d.pattern_id, d.customer_id, d.merchant_id) not in seen]
    return sorted(fresh, key=lambda d: (d.chunk, d.pattern_id, d.merchant_id, d.customer_id))


@dataclass
class ChunkMetrics:
    chunk: int
    rows: int
    quarantined: int
    landed_at: datetime | None
    pat: dict[str, int] = field(default_factory=dict)


def commit_batch(conn: psycopg.Connection, schema: str, last_chunk: int, detections: list[Detection],
                 detection_time: datetime, y_start: datetime, metrics: list[ChunkMetrics],
                 quarantine: list[tuple[int, int | None, str, str | None]], batch_size: int) -> datetime:
    """Inside the batch's transaction (deltas staged): apply state, detections, metrics, checkpoint.

    Returns the commit time recorded in the metrics: taken after the bulk writes, just before COMMIT.
    """
    conn.execute(f"""
        INSERT INTO {schema}.customer_txn_stats AS t (customer_id, merchant_id, txn_count, amount_sum, customer_name)
        SELECT customer_id, merchant_id, sum(n), sum(s), max(name COLLATE "C") FROM y_batch_delta
        GROUP BY customer_id, merchant_id
        ON CONFLICT (merchant_id, customer_id) DO UPDATE SET
            txn_count = t.txn_count + excluded.txn_count,
            amount_sum = t.amount_sum + excluded.amount_sum,
            -- Byte order, as Spark's max() and the driver's replay compare: a locale collation could
            -- pick another "greatest" name and make the stored name depend on the batch size.
            customer_name = greatest(t.customer_name COLLATE "C", excluded.customer_name COLLATE "C")""")
    conn.execute(f"""
        INSERT INTO {schema}.merchant_txn_count AS t (merchant_id, txn_count)
        SELECT merchant_id, sum(n) FROM y_batch_delta GROUP BY merchant_id
        ON CONFLICT (merchant_id) DO UPDATE SET txn_count = t.txn_count + excluded.txn_count""")
    conn.execute(f"""
        INSERT INTO {schema}.merchant_gender_customers (merchant_id, gender, customer_id)
        SELECT DISTINCT merchant_id, 'F', customer_id FROM y_batch_delta WHERE has_f
        UNION SELECT DISTINCT merchant_id, 'M', customer_id FROM y_batch_delta WHERE has_m
        ON CONFLICT DO NOTHING""")
    if detections:
        base = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {schema}.detected_patterns").fetchone()[0]
        from txnwatch.detect.rules import PATTERNS

        with conn.cursor().copy(
                f"COPY {schema}.detected_patterns (pattern_id, customer_id, merchant_id, action_type, "
                "customer_name, chunk, seq, detection_time, y_start_time) FROM STDIN") as cp:
            for i, d in enumerate(detections, start=base + 1):
                cp.write_row((d.pattern_id, d.customer_id, d.merchant_id, PATTERNS[d.pattern_id],
                              d.customer_name, d.chunk, i, detection_time, y_start))
    if quarantine:
        with conn.cursor().copy(f"COPY {schema}.y_quarantine (chunk, source_line, reason, raw) FROM STDIN") as cp:
            for row in quarantine:
                cp.write_row(row)
    committed_at = datetime.now(UTC)
    for m in metrics:
        conn.execute(
            f"INSERT INTO {schema}.y_chunk_metrics (chunk, rows, quarantined, landed_at, committed_at, "
            "batch_size, detections, pat1, pat2, pat3) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (m.chunk, m.rows, m.quarantined, m.landed_at, committed_at, batch_size, sum(m.pat.values()),
             m.pat.get("PatId1", 0), m.pat.get("PatId2", 0), m.pat.get("PatId3", 0)))
    conn.execute(f"UPDATE {schema}.y_checkpoint SET last_chunk = %s, updated_at = now() WHERE id = 1",
                 (last_chunk,))
    return committed_at


def mark_finished(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f"UPDATE {schema}.y_checkpoint SET finished = true, updated_at = now() WHERE id = 1")
