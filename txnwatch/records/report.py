"""`txnwatch report`: what the detection job has done, from its per-chunk metrics in PostgreSQL.

Lag is per chunk: from the moment the chunk landed (X's ledger, else the object's time) to the commit
of its detections. `collect_report` is also what the Airflow report task calls.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import psycopg

from txnwatch.core.db import check_schema, connect, redact, resolve_db_url
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.detect.shapes import PATTERNS
from txnwatch.records.queries import detections_per_pattern, one, queries, rows


def collect_report(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """chunks, rows, detections per pattern, per-chunk lag percentiles and a few more, as one dict."""
    s = check_schema(schema)
    if not conn.execute(queries()["has_metrics"], {"schema": s}).fetchone()[0]:
        raise TxnwatchError(f"schema {schema!r} has no detection metrics (has `txnwatch detect` run on it?)")
    chunks, row_count, quarantined_rows, max_batch, p50, p95, lag_max, lag_chunks, _ = one(conn, "totals", s)
    detections = detections_per_pattern(conn, s)
    quarantined_chunks = one(conn, "quarantined_chunks", s)[0]
    files, written, _ = one(conn, "files", s)
    cp = one(conn, "y_position", s)

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(float(v), 3)

    return {
        "chunks": chunks,
        "rows": int(row_count),
        "detections": detections,
        "detections_total": sum(detections.values()),
        "lag_p50_s": rounded(p50),
        "lag_p95_s": rounded(p95),
        "lag_max_s": rounded(lag_max),
        "lag_chunks": lag_chunks,
        "quarantined_rows": int(quarantined_rows),
        "quarantined_chunks": quarantined_chunks,
        "max_batch_chunks": max_batch,
        "files": files,
        "detections_in_files": written,
        "last_chunk": cp[0] if cp else 0,
        "finished": bool(cp[1]) if cp else False,
        "landing": cp[2] if cp else None,
        "output": cp[3] if cp else None,
    }


def _text(r: dict[str, Any]) -> str:
    def sec(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}s"

    lines = [
        f"landing {r['landing']}  ->  output {r['output']}",
        f"chunks    {r['chunks']} (last {r['last_chunk']}{', finished' if r['finished'] else ''}; "
        f"largest batch {r['max_batch_chunks']})",
        f"rows      {r['rows']} ({r['quarantined_rows']} rows and {r['quarantined_chunks']} chunks quarantined)",
        "detections " + ", ".join(f"{p}={n}" for p, n in r["detections"].items())
        + f" (total {r['detections_total']}; {r['detections_in_files']} in {r['files']} files)",
        f"lag       p50 {sec(r['lag_p50_s'])}  p95 {sec(r['lag_p95_s'])}  max {sec(r['lag_max_s'])} "
        f"over {r['lag_chunks']} chunks",
    ]
    return "\n".join(lines)


def plot(conn: psycopg.Connection, schema: str, path: str) -> None:
    """Lag per chunk, and cumulative detections per pattern over time, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = check_schema(schema)
    per_chunk = [(r[0], r[4], r[3]) for r in rows(conn, "chunk_series", s, {"after": 0, "limit": None})]
    events = rows(conn, "detection_commits", s)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), constrained_layout=True)
    lagged = [(k, lag, b) for k, lag, b in per_chunk if lag is not None]
    if lagged:
        ks = [k for k, _, _ in lagged]
        ax1.plot(ks, [lag for _, lag, _ in lagged], marker=".", linewidth=1, label="lag (landed -> committed)")
        multi = [(k, lag) for k, lag, b in lagged if b > 1]
        if multi:
            ax1.scatter([k for k, _ in multi], [lag for _, lag in multi], color="tab:orange", s=12, zorder=3,
                        label="in a multi-chunk batch")
        ax1.axhline(1.0, color="tab:red", linestyle="--", linewidth=1, label="1 s target (p95)")
        ax1.legend(loc="upper right")
    ax1.set_xlabel("chunk")
    ax1.set_ylabel("seconds")
    ax1.set_title("Per-chunk lag")
    if events:
        start, end = one(conn, "commit_span", s)
        span = (end - start).total_seconds()
        for p in PATTERNS:
            times = [(t - start).total_seconds() for q, t in events if q == p]
            if times:
                # Held flat to the last commit, so the curve spans the whole run, not just the detections.
                ax2.step([*times, span], [*range(1, len(times) + 1), len(times)], where="post", label=p)
        ax2.legend(loc="upper left")
    ax2.set_xlabel("seconds since the first chunk was committed")
    ax2.set_ylabel("detections (cumulative)")
    ax2.set_title("Detections over time")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def command(args) -> int:
    url = resolve_db_url(args.db)
    with connect(url, autocommit=True) as conn:
        try:
            report = collect_report(conn, args.schema)
            if args.plot:
                plot(conn, args.schema, args.plot)
        except psycopg.Error as e:
            raise TxnwatchError(f"PostgreSQL at {redact(url)}: {first_line(e)}") from None
    if args.json:
        print(json.dumps(report))
    else:
        print(_text(report))
        if args.plot:
            print(f"plot written to {args.plot}")
    sys.stdout.flush()
    return 0
