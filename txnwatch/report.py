"""`txnwatch report`: what the detection job has done, from its per-chunk metrics in PostgreSQL.

Lag is per chunk: from the moment the chunk landed (X's ledger, else the object's time) to the commit
of its detections. `collect_report` is also what the Airflow report task calls.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import psycopg

from txnwatch.db import check_schema, connect, redact, resolve_db_url
from txnwatch.errors import TxnwatchError, first_line

PATTERNS = ("PatId1", "PatId2", "PatId3")


def collect_report(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """chunks, rows, detections per pattern, per-chunk lag percentiles and a few more, as one dict."""
    s = check_schema(schema)
    exists = conn.execute("SELECT to_regclass(%s)", (f"{s}.y_chunk_metrics",)).fetchone()[0]
    if exists is None:
        raise TxnwatchError(f"schema {schema!r} has no detection metrics (has `txnwatch detect` run on it?)")
    chunks, rows, quarantined_rows, max_batch = conn.execute(
        f"SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(quarantined), 0), coalesce(max(batch_size), 0) "
        f"FROM {s}.y_chunk_metrics").fetchone()
    lag = conn.execute(
        f"""SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.95) WITHIN GROUP (ORDER BY lag),
                   max(lag), count(lag)
            FROM (SELECT extract(epoch FROM committed_at - landed_at)::float8 AS lag
                  FROM {s}.y_chunk_metrics WHERE landed_at IS NOT NULL) t""").fetchone()
    detections = dict.fromkeys(PATTERNS, 0)
    detections.update(dict(conn.execute(
        f"SELECT pattern_id, count(*) FROM {s}.detected_patterns GROUP BY pattern_id").fetchall()))
    quarantined_chunks = conn.execute(
        f"SELECT count(DISTINCT chunk) FROM {s}.y_quarantine WHERE raw IS NULL").fetchone()[0]
    files, written = conn.execute(f"SELECT count(*), coalesce(max(last_seq), 0) FROM {s}.y_output_files").fetchone()
    cp = conn.execute(f"SELECT last_chunk, finished, landing, output FROM {s}.y_checkpoint WHERE id = 1").fetchone()

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(float(v), 3)

    return {
        "chunks": chunks,
        "rows": int(rows),
        "detections": detections,
        "detections_total": sum(detections.values()),
        "lag_p50_s": rounded(lag[0]),
        "lag_p95_s": rounded(lag[1]),
        "lag_max_s": rounded(lag[2]),
        "lag_chunks": lag[3],
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
    per_chunk = conn.execute(
        f"SELECT chunk, extract(epoch FROM committed_at - landed_at)::float8, batch_size "
        f"FROM {s}.y_chunk_metrics ORDER BY chunk").fetchall()
    events = conn.execute(
        f"SELECT d.pattern_id, m.committed_at FROM {s}.detected_patterns d "
        f"JOIN {s}.y_chunk_metrics m USING (chunk) ORDER BY d.seq").fetchall()
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
        start, end = conn.execute(
            f"SELECT min(committed_at), max(committed_at) FROM {s}.y_chunk_metrics").fetchone()
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
