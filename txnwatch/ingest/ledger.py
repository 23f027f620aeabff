"""X's ledger in PostgreSQL: `x_checkpoint` and `x_chunks` for one landing zone, over a connection that
survives outages and holds the ingest lock (one ingest per landing zone)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from txnwatch.core.db import JobLock, Link, check_schema
from txnwatch.core.errors import TxnwatchError
from txnwatch.ingest.chunks import Chunk


class Ledger:
    """x_checkpoint and x_chunks for one landing zone, over a connection that survives outages."""

    def __init__(self, db_url: str, schema: str, landing: str) -> None:
        self.s = check_schema(schema)
        self.landing = landing
        # One ingest per landing zone: a second one would race on the same chunk numbers.
        self.link = Link(db_url, autocommit=True, setup=JobLock(
            f"txnwatch-ingest:{self.s}:{landing}", busy=f"another ingest is already writing {landing}",
            name=f"the ingest lock of {landing}"))

    @property
    def conn(self) -> psycopg.Connection:
        return self.link.conn

    def reconnect(self) -> None:
        """After an outage: a new connection (and lock) before the unit of work runs again."""
        self.link.reconnect()

    def close(self) -> None:
        self.link.close()

    def load(self) -> dict | None:
        row = self.conn.execute(
            f"SELECT source_sha256, rows_per_chunk, last_chunk, rows_landed, rejected, finished "
            f"FROM {self.s}.x_checkpoint WHERE landing = %s", (self.landing,)).fetchone()
        if row is None:
            return None
        keys = ("source_sha256", "rows_per_chunk", "last_chunk", "rows_landed", "rejected", "finished")
        return dict(zip(keys, row, strict=True))

    def create(self, source: str, sha256: str, rows_per_chunk: int) -> None:
        self.conn.execute(
            f"INSERT INTO {self.s}.x_checkpoint (landing, source, source_sha256, rows_per_chunk) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (landing) DO NOTHING",
            (self.landing, source, sha256, rows_per_chunk))

    def commit_chunk(self, chunk: Chunk, landed_at: float, lag_s: float) -> None:
        """Record chunk k as landed. Idempotent for k itself: a commit whose answer an outage lost is
        found done when the chunk's step is re-run."""
        conn = self.conn
        with conn.transaction():
            cur = conn.execute(
                f"UPDATE {self.s}.x_checkpoint SET last_chunk = %s, rows_landed = rows_landed + %s, "
                "rejected = rejected + %s, updated_at = now() WHERE landing = %s AND last_chunk = %s",
                (chunk.k, chunk.rows, chunk.rejected_count, self.landing, chunk.k - 1))
            if cur.rowcount != 1:
                if self.load()["last_chunk"] == chunk.k:
                    return
                raise TxnwatchError(
                    f"checkpoint of {self.landing} moved under this ingest at chunk {chunk.k}")
            conn.execute(
                f"INSERT INTO {self.s}.x_chunks (landing, chunk, rows, rejected, landed_at, lag_s) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (self.landing, chunk.k, chunk.rows, chunk.rejected_count,
                 datetime.fromtimestamp(landed_at, UTC), lag_s))

    def finish(self) -> None:
        self.conn.execute(f"UPDATE {self.s}.x_checkpoint SET finished = true, updated_at = now() "
                          "WHERE landing = %s", (self.landing,))
