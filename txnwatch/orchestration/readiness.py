"""Y's readiness mark and liveness as Postgres records them (`y_checkpoint`): when the current run
started, when its Spark session was warm enough to pick up chunks, when it last showed a sign of life.

The demo starts X only once Y is ready (a consumer before its producer); Y's DAG report logs the
start-up time. Nothing here writes: Mechanism Y owns the marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
    if conn.execute("SELECT to_regclass(%s)", (f"{schema}.y_checkpoint",)).fetchone()[0] is None:
        return None
    row = conn.execute(f"SELECT y_start_time, ready_at, heartbeat_at, now() FROM {schema}.y_checkpoint "
                       "WHERE id = 1").fetchone()
    return None if row is None else YReadiness(*row)
