"""Y's state in PostgreSQL: the job lock, the checkpoint, loading the state and the per-batch commit.

Everything a batch changes (running state, detections, metrics, quarantine entries, checkpoint) is
written in one transaction that starts by locking the checkpoint row and checking that the batch
follows it, so re-applying a committed chunk is a no-op. While Y runs the state lives in memory
(live_state.py): this module loads it and writes back what each batch changed.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from txnwatch.core.db import JobLock
from txnwatch.core.errors import TxnwatchError
from txnwatch.detect.live_state import BatchChanges, LiveState, Match
from txnwatch.detect.shapes import MEMBER, MERCHANT, PAIR, PATTERNS, STORED_PAIR, temp_table_ddl

log = logging.getLogger("txnwatch.detect")


def job_lock(schema: str) -> JobLock:
    """Y's lock, one per schema: two detection jobs on one schema would double-apply chunks."""
    return JobLock(f"txnwatch-y:{schema}", busy=f"another detection job is already running on schema {schema!r}",
                   name=f"the job lock of schema {schema!r}")


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



def begin_batch(conn: psycopg.Connection, schema: str, first_chunk: int) -> bool:
    """Inside an open transaction: lock the checkpoint; False if this batch was already committed."""
    last = conn.execute(f"SELECT last_chunk FROM {schema}.y_checkpoint WHERE id = 1 FOR UPDATE").fetchone()[0]
    if last >= first_chunk:
        return False
    if last != first_chunk - 1:
        raise TxnwatchError(f"checkpoint is at chunk {last} but the batch starts at {first_chunk}")
    return True




def _copy_out(conn: psycopg.Connection, query: str, schema: pa.Schema) -> pa.Table:
    """A query's rows as Arrow, through COPY ... CSV (fast, no Python object per row)."""
    buf = io.BytesIO()
    with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as cp:
        for block in cp:
            buf.write(block)
    if not buf.tell():
        return schema.empty_table()
    buf.seek(0)
    return pacsv.read_csv(buf, read_options=pacsv.ReadOptions(column_names=schema.names),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True),
                          convert_options=pacsv.ConvertOptions(column_types=schema, true_values=["t"],
                                                               false_values=["f"], strings_can_be_null=False))


def _copy_in(conn: psycopg.Connection, table: str, rows: pa.Table) -> None:
    """Arrow rows into `table` through COPY ... CSV (Postgres reads Arrow's CSV as written)."""
    if not rows.num_rows:
        return
    buf = io.BytesIO()
    pacsv.write_csv(rows, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    with conn.cursor().copy(f"COPY {table} ({', '.join(rows.schema.names)}) FROM STDIN (FORMAT csv)") as cp:
        cp.write(buf.getvalue())


def load_state(conn: psycopg.Connection, schema: str, live: LiveState) -> None:
    """Fill `live` with the state Postgres holds (at start, and after a failed batch)."""
    pairs = _copy_out(conn, f"""
        SELECT s.merchant_id, s.customer_id, s.txn_count, s.amount_sum, s.customer_name,
               f.customer_id IS NOT NULL, m.customer_id IS NOT NULL
        FROM {schema}.customer_txn_stats s
        LEFT JOIN {schema}.merchant_gender_customers f
               ON f.merchant_id = s.merchant_id AND f.customer_id = s.customer_id AND f.gender = 'F'
        LEFT JOIN {schema}.merchant_gender_customers m
               ON m.merchant_id = s.merchant_id AND m.customer_id = s.customer_id AND m.gender = 'M'""",
                      STORED_PAIR)
    merchants = _copy_out(conn, f"SELECT merchant_id, txn_count, female_customers, male_customers "
                                f"FROM {schema}.merchant_txn_count", MERCHANT)
    reported = conn.execute(f"SELECT pattern_id, customer_id, merchant_id FROM {schema}.detected_patterns").fetchall()
    live.load(pairs, merchants, reported)


_STAGING = ";\n".join(temp_table_ddl(name, shape)
                       for name, shape in (("y_pairs", PAIR), ("y_merchants", MERCHANT), ("y_members", MEMBER)))


def write_changes(conn: psycopg.Connection, schema: str, changes: BatchChanges) -> None:
    """Inside the batch's transaction: the touched pairs and merchants (their values after the batch)
    and the new gender members. Values, not increments: the live state is exact, and the checkpoint
    lock makes this the only writer."""
    conn.execute(_STAGING)
    _copy_in(conn, "y_pairs", changes.pairs)
    _copy_in(conn, "y_merchants", changes.merchants)
    _copy_in(conn, "y_members", changes.members)
    conn.execute(f"""
        INSERT INTO {schema}.customer_txn_stats AS t (merchant_id, customer_id, txn_count, amount_sum, customer_name)
        SELECT merchant_id, customer_id, txn_count, amount_sum, customer_name FROM y_pairs
        ON CONFLICT (merchant_id, customer_id) DO UPDATE SET txn_count = excluded.txn_count,
            amount_sum = excluded.amount_sum, customer_name = excluded.customer_name""")
    conn.execute(f"""
        INSERT INTO {schema}.merchant_txn_count AS t (merchant_id, txn_count, female_customers, male_customers)
        SELECT merchant_id, txn_count, female_customers, male_customers FROM y_merchants
        ON CONFLICT (merchant_id) DO UPDATE SET txn_count = excluded.txn_count,
            female_customers = excluded.female_customers, male_customers = excluded.male_customers""")
    conn.execute(f"""
        INSERT INTO {schema}.merchant_gender_customers (merchant_id, gender, customer_id)
        SELECT merchant_id, gender, customer_id FROM y_members ON CONFLICT DO NOTHING""")


@dataclass
class ChunkMetrics:
    chunk: int
    rows: int
    quarantined: int
    landed_at: datetime | None
    pat: dict[str, int] = field(default_factory=dict)


def commit_batch(conn: psycopg.Connection, schema: str, last_chunk: int, detections: list[Match],
                 detection_time: datetime, y_start: datetime, metrics: list[ChunkMetrics],
                 quarantine: list[tuple[int, int | None, str, str | None]], batch_size: int,
                 batch_seconds: float) -> datetime:
    """Inside the batch's transaction (state written): detections, quarantine, metrics, checkpoint.

    Returns the commit time recorded in the metrics: taken after the bulk writes, just before COMMIT.
    """
    if detections:
        base = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {schema}.detected_patterns").fetchone()[0]
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
    with conn.cursor().copy(f"COPY {schema}.y_chunk_metrics (chunk, rows, quarantined, landed_at, committed_at, "
                            "batch_size, batch_seconds, detections, pat1, pat2, pat3) FROM STDIN") as cp:
        for m in metrics:
            cp.write_row((m.chunk, m.rows, m.quarantined, m.landed_at, committed_at, batch_size, batch_seconds,
                          sum(m.pat.values()), m.pat.get("PatId1", 0), m.pat.get("PatId2", 0),
                          m.pat.get("PatId3", 0)))
    conn.execute(f"UPDATE {schema}.y_checkpoint SET last_chunk = %s, updated_at = now(), heartbeat_at = now() "
                 "WHERE id = 1", (last_chunk,))
    return committed_at


def mark_finished(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f"UPDATE {schema}.y_checkpoint SET finished = true, updated_at = now() WHERE id = 1")
