"""Y's readiness mark and liveness as Postgres records them (`y_checkpoint`): when the current run
started, when its Spark session was warm enough to pick up chunks, when it last showed a sign of life.

The demo starts X only once Y is ready (a consumer before its producer); Y's DAG report logs the
start-up time. Nothing here writes: Mechanism Y owns the marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from txnwatch.core.db import check_schema
from txnwatch.records.queries import one, queries


@dataclass(frozen=True)
class YReadiness:
    y_start_time: datetime | None  # when the current (or last) Y run started
    ready_at: datetime | None  # when it was warm and picking up chunks; None while it starts
    heartbeat_at: datetime | None
    now: datetime  # the database's clock, to compare the others with

    def ready_since(self, started_after: datetime) -> bool:
        """True once a run started at or after `started_after` is warm (an older run's mark does not count)."""
        return (self.ready_at is not None and self.y_start_time is not None
                and self.y_start_time >= started_after)

    @property
    def startup_s(self) -> float | None:
        if self.ready_at is None or self.y_start_time is None:
            return None
        return (self.ready_at - self.y_start_time).total_seconds()

    @property
    def heartbeat_age_s(self) -> float | None:
        return None if self.heartbeat_at is None else (self.now - self.heartbeat_at).total_seconds()


def db_now(conn: Any) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def y_readiness(conn: Any, schema: str) -> YReadiness | None:
    """The marks of `schema`; None while Y has not created its checkpoint (or the schema does not exist)."""
    s = check_schema(schema)
    if not conn.execute(queries()["has_y_checkpoint"], {"schema": s}).fetchone()[0]:
        return None
    row = one(conn, "y_readiness", s)
    return None if row is None else YReadiness(*row)
