"""A second replay through the DAGs: start over when the user says so, or say why not.

A landing zone holds one replay of one source, and a schema the state of one stream. Triggering the flow
again with the same ones used to resume a stream that had already finished: X said "nothing to do", Y
flushed nothing, and both runs succeeded having done nothing. Now the Y DAG (triggered first) checks
before its job starts: with `start_over` it clears the schema, the landing zone and the output, so the
X run that follows lands a fresh replay; without it a finished stream fails the run at once with one
line saying what to change. The X DAG refuses a finished landing zone the same way. An unfinished
stream (a run that was stopped) still resumes, as before: that is a restart, not a replay.
"""

from __future__ import annotations

from typing import Any

from txnwatch.core.storage import Store

ASK = ("a new replay needs another landing zone, output and schema, or trigger mechanism_y_detect with "
       "start_over on (it clears this landing zone, output and schema first), then mechanism_x_ingest")


def _exists(conn: Any, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None


def finished_detection(conn: Any, schema: str) -> str | None:
    """Why Y cannot start a new replay in `schema` (it already processed a whole stream there), or None:
    nothing yet, a stream to resume, or a landing zone X finished that Y has still to process (a backlog)."""
    if _exists(conn, f"{schema}.y_checkpoint"):
        row = conn.execute(f"SELECT landing, output, last_chunk FROM {schema}.y_checkpoint "
                           "WHERE id = 1 AND finished").fetchone()
        if row:
            return (f"schema {schema} already finished a replay: Mechanism Y processed all {row[2]} chunks of "
                    f"{row[0]} into {row[1]}; {ASK}")
    return None


def finished_landing(conn: Any, schema: str, landing: str) -> str | None:
    """Why X cannot land a new replay in `landing` (it holds a finished one), or None."""
    if _exists(conn, f"{schema}.x_checkpoint"):
        row = conn.execute(f"SELECT last_chunk, source FROM {schema}.x_checkpoint WHERE landing = %s AND finished",
                           (landing,)).fetchone()
        if row:
            return (f"landing zone {landing} already holds a finished replay of {row[1]} ({row[0]} chunks); {ASK}")
    return None


def clear_store(store: Store) -> int:
    """Delete every object of a landing zone or output; how many."""
    keys = store.list()
    for key in keys:
        store.delete(key)
    return len(keys)


def start_over(conn: Any, schema: str, stores: list[Store]) -> list[str]:
    """Drop `schema` (X's and Y's state) and empty `stores`; one line per thing cleared, for the log."""
    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return [f"start over: dropped schema {schema}",
            *(f"start over: deleted {clear_store(s)} objects under {s.url}" for s in stores)]
