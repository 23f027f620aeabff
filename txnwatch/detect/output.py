"""Detection files: exactly 50 detections per file, written only after the detections are committed.

File n holds seq (n-1)*50+1 .. n*50 of `detected_patterns`, and its content is rendered from stored
columns only (times included), so writing it again after a crash yields the same bytes. A file is
recorded in `y_output_files` after it is written; on restart every group not yet recorded is written
(again). The remainder (< 50) is written only once the last chunk `_END.json` counts is processed.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import psycopg

from txnwatch.core.storage import Store

log = logging.getLogger("txnwatch.detect")

FILE_SIZE = 50
IST = timezone(timedelta(hours=5, minutes=30), "IST")


def file_key(n: int) -> str:
    return f"detections_{n:08d}.jsonl"


def ist(t: datetime) -> str:
    """`2025-07-04T12:00:03+05:30`."""
    return t.astimezone(IST).isoformat(timespec="seconds")


def render(rows: list[tuple]) -> bytes:
    """JSON Lines with exactly the SPEC's keys in the SPEC's order."""
    out = []
    for y_start, detected, pattern_id, action, name, merchant in rows:
        out.append(json.dumps({"YStartTime": ist(y_start), "detectionTime": ist(detected), "patternId": pattern_id,
                               "ActionType": action, "customerName": name, "merchantId": merchant},
                              ensure_ascii=False))
    return ("\n".join(out) + "\n").encode("utf-8")


def write_pending(conn: psycopg.Connection, schema: str, store: Store, final: bool) -> int:
    """Write every full group of 50 not yet recorded (and the remainder when `final`); files written."""
    written = 0
    while True:
        with conn.transaction():
            done = conn.execute(f"SELECT coalesce(max(file_no), 0), coalesce(max(last_seq), 0) "
                                f"FROM {schema}.y_output_files").fetchone()
            max_seq = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {schema}.detected_patterns").fetchone()[0]
        n, first = done[0] + 1, done[1] + 1
        last = first + FILE_SIZE - 1
        if max_seq < last:
            if not (final and max_seq >= first):
                return written
            last = max_seq
        rows = conn.execute(
            f"SELECT y_start_time, detection_time, pattern_id, action_type, customer_name, merchant_id "
            f"FROM {schema}.detected_patterns WHERE seq BETWEEN %s AND %s ORDER BY seq", (first, last)).fetchall()
        store.put(file_key(n), render(rows))
        with conn.transaction():
            conn.execute(f"INSERT INTO {schema}.y_output_files (file_no, first_seq, last_seq) VALUES (%s, %s, %s)",
                         (n, first, last))
        log.info("wrote %s (detections %d-%d)", store.uri(file_key(n)), first, last)
        written += 1
