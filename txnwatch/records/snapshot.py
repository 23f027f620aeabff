"""What the live view shows, read from one schema's state in PostgreSQL in one read-only snapshot
(the queries are the read side's, `queries.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from txnwatch.core.db import check_schema
from txnwatch.core.errors import TxnwatchError
from txnwatch.detect.shapes import PATTERNS
from txnwatch.records.queries import detections_per_pattern, one, queries, rows

LAG_TARGET_S = 1.0
# Y counts as stalled when its heartbeat (every ~1 s while it runs) is older than this.
HEARTBEAT_STALE_S = 10.0
MAX_SERIES_POINTS = 2000
NEWEST_DETECTIONS = 15
NEWEST_QUARANTINE = 5


class SchemaNotFound(LookupError):
    """The schema holds no txnwatch tables (yet)."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def list_schemas(conn: psycopg.Connection) -> list[str]:
    """Schemas holding txnwatch's tables (only names a user could have typed into the params form), the
    most recently active first (then by name; never active last)."""
    names = []
    for (name,) in conn.execute(queries()["schemas"]).fetchall():
        try:
            names.append(check_schema(name))
        except TxnwatchError:
            continue
    activity = {}
    for name in names:
        try:
            activity[name] = _last_activity(conn, name)
        except psycopg.Error:
            # Dropped since it was listed (tests and resets drop schemas all the time on a shared server), or
            # tables that only share txnwatch's names: left out, rather than failing the whole list.
            continue
    return sorted(activity, key=lambda n: (activity[n] is None, -(activity[n].timestamp() if activity[n] else 0), n))


def _last_activity(conn: psycopg.Connection, schema: str) -> datetime | None:
    with conn.transaction():  # a savepoint inside a caller's transaction: a failure here leaves it usable
        return one(conn, "last_activity", schema)[0]


def y_status(y: dict[str, Any] | None, since: datetime | None = None) -> str:
    """One word for where Mechanism Y stands: not started, starting, running, stalled or finished.

    With `since` (a DAG run's queue time), a Y that started before it is an earlier run's: "not started"."""
    if y is None or (since is not None and (y["y_start_time"] is None or y["y_start_time"] < since)):
        return "not started"
    if y["finished"]:
        return "finished"
    if y["ready_at"] is None:
        return "starting"
    age = y["heartbeat_age_s"]
    if age is None or age > HEARTBEAT_STALE_S:
        return "stalled"
    return "running"


def snapshot(conn: psycopg.Connection, schema: str, after: int = 0, y_since: datetime | None = None,
             x_since: datetime | None = None) -> dict[str, Any]:
    """Everything the page draws, as one JSON-ready dict; per-chunk series only for chunks > `after`.

    `y_since` / `x_since`: the view of one DAG run (queued then): a Y, or an X, last active before it
    belongs to an earlier run, and is shown as this run's "not started", not as that run's state.

    Raises SchemaNotFound when the schema has no txnwatch tables. Runs in one read-only, repeatable-read
    transaction so that the numbers agree with each other.
    """
    s = check_schema(schema)
    after = max(0, int(after))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        if not conn.execute(queries()["has_tables"], {"schema": s}).fetchone()[0]:
            raise SchemaNotFound(f"schema {s!r} holds no txnwatch tables yet")
        y_row = one(conn, "y_position", s)
        y = None if y_row is None else dict(zip(
            ("last_chunk", "finished", "landing", "output", "y_start_time", "ready_at", "heartbeat_at",
             "heartbeat_age_s"), y_row, strict=True))
        x_row = one(conn, "x_position", s, {"y_landing": y and y["landing"]})
        (chunks, row_count, quarantined_rows, max_batch, p50, p95, lag_max, lag_chunks,
         within_target) = one(conn, "totals", s)
        detections = detections_per_pattern(conn, s)
        files, in_files, last_file_at = one(conn, "files", s)
        quarantined_chunks = one(conn, "quarantined_chunks", s)[0]
        series = rows(conn, "chunk_series", s, {"after": after, "limit": MAX_SERIES_POINTS})
        newest = rows(conn, "newest_detections", s, {"limit": NEWEST_DETECTIONS})
        quarantine = rows(conn, "newest_quarantine", s, {"limit": NEWEST_QUARANTINE})

    x_last = x_row[1] if x_row else 0
    x_earlier = x_row is not None and x_since is not None and (x_row[5] is None or x_row[5] < x_since)
    y_last = y["last_chunk"] if y else 0
    return {
        "schema": s,
        "lag_target_s": LAG_TARGET_S,
        "x": None if x_row is None else {
            "landing": x_row[0], "last_chunk": x_row[1], "rows_landed": int(x_row[2]), "rejected": int(x_row[3]),
            "finished": bool(x_row[4]), "updated_at": _iso(x_row[5]),
            "status": "not started" if x_earlier else ("finished" if x_row[4] else "landing"),
        },
        "y": {
            "status": y_status(y, y_since),
            "last_chunk": y_last,
            "finished": bool(y and y["finished"]),
            "landing": y and y["landing"],
            "output": y and y["output"],
            "y_start_time": _iso(y and y["y_start_time"]),
            "ready_at": _iso(y and y["ready_at"]),
            "heartbeat_at": _iso(y and y["heartbeat_at"]),
            "heartbeat_age_s": _round(y and y["heartbeat_age_s"], 1),
        },
        "backlog_chunks": max(0, x_last - y_last),
        "chunks": chunks,
        "rows": int(row_count),
        "quarantined_rows": int(quarantined_rows),
        "quarantined_chunks": quarantined_chunks,
        "max_batch_chunks": max_batch,
        "detections": detections,
        "detections_total": sum(detections.values()),
        "files": files,
        "detections_in_files": int(in_files),
        "last_file_at": _iso(last_file_at),
        "lag_p50_s": _round(p50),
        "lag_p95_s": _round(p95),
        "lag_max_s": _round(lag_max),
        "lag_chunks": lag_chunks,
        "lag_within_target": within_target,
        "series": {
            "after": after,
            "chunk": [r[0] for r in series],
            "rows": [r[1] for r in series],
            "quarantined": [r[2] for r in series],
            "batch_size": [r[3] for r in series],
            "lag_s": [_round(r[4]) for r in series],
            "cumulative": {p: [int(r[5 + i]) for r in series] for i, p in enumerate(PATTERNS)},
        },
        "newest_detections": [
            {"seq": r[0], "patternId": r[1], "ActionType": r[2], "customerName": r[3], "customerId": r[4],
             "merchantId": r[5], "chunk": r[6], "detectionTime": _iso(r[7]), "file": r[8]}
            for r in newest
        ],
        "newest_quarantine": [
            {"chunk": r[0], "sourceLine": r[1], "reason": r[2], "recordedAt": _iso(r[3])} for r in quarantine
        ],
    }
