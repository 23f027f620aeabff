"""Mechanism X (`txnwatch ingest`): replay a transactions file as one immutable chunk per interval.

The landing-zone contract is SPEC section 3. The order of each step is what makes a kill -9 safe:

1. build chunk k in memory (chunks.py; deterministic bytes: same source, same R -> same chunk);
2. wait until chunk k is due;
3. put `_rejected/chunk_k.csv` (if any row was rejected), then the chunk itself (atomic);
4. commit the x_chunks row and the x_checkpoint update in one transaction (ledger.py).

A crash between 3 and 4 re-lands identical bytes on restart, so the landing zone never holds a
chunk with two different contents, and the ledger never has a gap or a duplicate.

`max_chunks` replays only the first K chunks and then *ends the stream*: `_END.json` is written and
the checkpoint is marked finished, so Y flushes and stops as it would at the end of the file.
Re-running a finished ingest (with or without a larger K) is a no-op that says so; use a new
landing zone for a longer replay.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from txnwatch.core import defaults
from txnwatch.core import landing as lz
from txnwatch.core.db import init_schema, resolve_db_url, scrub
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.failures import job_failures
from txnwatch.core.retry import RetryPolicy
from txnwatch.core.storage import Store, open_store
from txnwatch.ingest.chunks import Chunk, ChunkReader, normalise_importance
from txnwatch.ingest.ledger import Ledger
from txnwatch.ingest.sources import LocalCopy, fetch

log = logging.getLogger("txnwatch.ingest")
IMPORTANCE_REJECTED_KEY = f"{lz.REJECTED_PREFIX}customer_importance.csv"


@dataclass
class IngestSummary:
    landing: str
    chunks_landed: int = 0  # by this run
    rows: int = 0  # rows landed by this run
    rejected: int = 0  # rows rejected by this run
    last_chunk: int = 0  # the last chunk in the landing zone
    finished: bool = False  # _END.json is written
    already_complete: bool = False  # nothing to do: a previous run finished this landing zone
    stopped: bool = False  # the stop event ended the run early
    max_lag_s: float = 0.0


def _put_immutable(store: Store, key: str, data: bytes) -> bool:
    """Put `key` unless it already holds exactly `data`; different content is never overwritten.

    Returns True when the object was written now, False when it was already there.
    """
    if store.exists(key):
        if store.get(key) == data:
            return False
        raise TxnwatchError(f"{store.uri(key)} already exists with different content; "
                            "refusing to rewrite it (use a new landing zone for a different source)")
    store.put(key, data)
    return True


def publish_importance(importance: str, landing: str, s3_client=None) -> str:
    """Publish the normalised importance file at the landing zone's REFERENCE_KEY; returns its URI.

    Idempotent (the key is immutable), so the Airflow task that publishes it ahead of the producer and
    the producer's own publication do not conflict.
    """
    store = open_store(landing, client=s3_client)
    _publish_importance(store, fetch(importance, s3_client))
    return store.uri(lz.REFERENCE_KEY)


def _publish_importance(store: Store, copy: LocalCopy) -> None:
    data, rejected, n, n_rejected = normalise_importance(copy)
    if rejected is not None:
        _put_immutable(store, IMPORTANCE_REJECTED_KEY, rejected)
        log.warning("importance: %d rows rejected, see %s", n_rejected, store.uri(IMPORTANCE_REJECTED_KEY))
    if _put_immutable(store, lz.REFERENCE_KEY, data):
        log.info("importance: published %d rows at %s", n, store.uri(lz.REFERENCE_KEY))


def _check_resume(cp: dict, sha256: str, rows_per_chunk: int, landing: str) -> None:
    if cp["rows_per_chunk"] != rows_per_chunk:
        raise TxnwatchError(
            f"{landing} was started with --rows-per-chunk {cp['rows_per_chunk']}, not {rows_per_chunk}; "
            "resume with the same value or use a new landing zone")
    if cp["source_sha256"] != sha256:
        raise TxnwatchError(
            f"{landing} was started from a different source file (sha256 {cp['source_sha256'][:12]}..., "
            f"now {sha256[:12]}...); resume with the same file or use a new landing zone")


def _write_end(store: Store, chunks: int, rows: int, rejected: int) -> None:
    body = json.dumps({"chunks": chunks, "rows": rows, "rejected": rejected}, sort_keys=True) + "\n"
    # The end marker is derived from the ledger, so a re-written one after a crash is identical.
    store.put(lz.END_KEY, body.encode())


def run_ingest(
    source: str,
    importance: str,
    landing: str,
    db_url: str,
    schema: str = defaults.SCHEMA,
    rows_per_chunk: int = defaults.ROWS_PER_CHUNK,
    interval: float = defaults.INTERVAL_S,
    max_chunks: int | None = None,
    s3_client: Any = None,
    stop: threading.Event | None = None,
    retry_seconds: float = defaults.RETRY_SECONDS,
    max_reject_share: float = defaults.MAX_REJECT_SHARE,
) -> IngestSummary:
    """Land `source` into `landing` one chunk per `interval`, resuming from the Postgres checkpoint.

    `stop`, when set, ends the run cleanly between chunks (the next run resumes). An outage of
    PostgreSQL or the object store pauses the run for up to `retry_seconds` (retry.py). A chunk of
    which more than `max_reject_share` of the rows are rejected stops the run before it lands (the
    wrong file, most likely). Raises TxnwatchError for anything the user can fix: bad source, missing
    bucket, unreachable database.
    """
    if rows_per_chunk <= 0:
        raise TxnwatchError("rows per chunk must be positive")
    if interval < 0:
        raise TxnwatchError("interval must be >= 0")
    if not 0 <= max_reject_share <= 1:
        raise TxnwatchError(f"max reject share must be between 0 and 1, got {max_reject_share:g}")
    stop = stop or threading.Event()
    policy = RetryPolicy(retry_seconds, stop, describe=lambda e: scrub(first_line(e)))
    store = policy.run(lambda: open_store(landing, client=s3_client))
    summary = IngestSummary(landing=store.url)
    ledger = Ledger(db_url, schema, store.url)
    try:
        with job_failures(db_url, f"cannot write the landing zone {store.url}", files=True):
            return _run(ledger, policy, store, summary, source, importance, schema, rows_per_chunk, interval,
                        max_chunks, s3_client, stop, max_reject_share)
    finally:
        ledger.close()


def _run(ledger: Ledger, policy: RetryPolicy, store, summary, source, importance, schema, rows_per_chunk,
         interval, max_chunks, s3_client, stop, max_reject_share) -> IngestSummary:
    def load() -> dict | None:
        init_schema(ledger.conn, schema)
        return ledger.load()

    cp = policy.run(load, ledger.reconnect)
    src = policy.run(lambda: fetch(source, s3_client))
    if cp is not None:
        _check_resume(cp, src.sha256, rows_per_chunk, store.url)
        summary.last_chunk = cp["last_chunk"]
        if cp["finished"]:
            summary.already_complete = summary.finished = True
            log.info("already complete: %s holds %d chunks (%d rows, %d rejected); nothing to do",
                     store.url, cp["last_chunk"], cp["rows_landed"], cp["rejected"])
            return summary
    # Validates the header (and a compressed file's integrity) before anything is published.
    reader = ChunkReader(src, rows_per_chunk, max_reject_share)
    try:
        policy.run(lambda: _publish_importance(store, fetch(importance, s3_client)))
        if cp is None:
            policy.run(lambda: ledger.create(src.location, src.sha256, rows_per_chunk), ledger.reconnect)
            cp = policy.run(ledger.load, ledger.reconnect)
        done = cp["last_chunk"]
        if done and not policy.run(lambda: store.exists(lz.chunk_key(done))):
            raise TxnwatchError(
                f"the checkpoint says chunk {done} was landed in {store.url}, but it is not there: the "
                "landing zone was changed outside txnwatch; use a new landing zone")
        log.info("ingest %s -> %s: %s layout, R=%d, interval=%gs, %s",
                 reader.name, store.url, reader.layout.name, rows_per_chunk, interval,
                 f"resuming after chunk {done}" if done else "starting at chunk 1")
        reader.skip(done)
        exhausted = _land_chunks(reader, store, ledger, policy, summary, done, interval, max_chunks, stop)
    finally:
        reader.close()
    if exhausted:
        total = policy.run(lambda: _end_stream(store, ledger), ledger.reconnect)
        summary.finished = True
        log.info("finished: %d chunks, %d rows, %d rejected in %s (this run: %d chunks, max lag %.3fs)",
                 total["last_chunk"], total["rows_landed"], total["rejected"], store.url,
                 summary.chunks_landed, summary.max_lag_s)
    else:
        log.info("stopped after chunk %d (this run: %d chunks, %d rows, %d rejected); rerun to resume",
                 summary.last_chunk, summary.chunks_landed, summary.rows, summary.rejected)
    return summary


def _end_stream(store: Store, ledger: Ledger) -> dict:
    total = ledger.load()
    _write_end(store, total["last_chunk"], total["rows_landed"], total["rejected"])
    ledger.finish()
    return total


def _land(store: Store, ledger: Ledger, chunk: Chunk, due: float, interval: float) -> float:
    """One chunk's unit of work, re-run whole after an outage: put it (identical bytes if it is there
    already), then commit it. Returns its lag behind schedule."""
    if chunk.rejected is not None:
        _put_immutable(store, lz.rejected_key(chunk.k), chunk.rejected)
    key = lz.chunk_key(chunk.k)
    if _put_immutable(store, key, chunk.data):
        landed_at = time.time()
    else:
        # Landed by a run that died before its commit: the chunk became visible back then.
        landed_at = store.mtime(key) or time.time()
    lag = max(0.0, time.monotonic() - due) if interval > 0 else 0.0
    ledger.commit_chunk(chunk, landed_at, lag)
    return lag


def _land_chunks(reader: ChunkReader, store: Store, ledger: Ledger, policy: RetryPolicy, summary: IngestSummary,
                 done: int, interval: float, max_chunks: int | None, stop: threading.Event) -> bool:
    """Land chunks done+1, done+2, ... on schedule. True when the stream has ended."""
    if max_chunks is not None and done >= max_chunks:
        return True
    start = time.monotonic()
    first = done + 1
    for chunk in reader.chunks(first):
        # Due times are absolute from the start of this run, so a slow chunk does not push back
        # the ones after it.
        due = start + (chunk.k - first) * interval
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            summary.stopped = True
            return False
        if stop.is_set():
            summary.stopped = True
            return False
        lag = policy.run(lambda c=chunk, d=due: _land(store, ledger, c, d, interval), ledger.reconnect)
        summary.chunks_landed += 1
        summary.rows += chunk.rows
        summary.rejected += chunk.rejected_count
        summary.last_chunk = chunk.k
        summary.max_lag_s = max(summary.max_lag_s, lag)
        log.info("chunk %d: rows=%d rejected=%d lag=%.3fs", chunk.k, chunk.rows, chunk.rejected_count, lag)
        if max_chunks is not None and chunk.k >= max_chunks:
            return True
    return True


def command(args) -> int:
    """`txnwatch ingest`: SIGINT/SIGTERM stop cleanly between chunks."""
    import signal

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = run_ingest(
            source=args.source, importance=args.importance, landing=args.landing,
            db_url=resolve_db_url(args.db), schema=args.schema, rows_per_chunk=args.rows_per_chunk,
            interval=args.interval, max_chunks=args.max_chunks, stop=stop, retry_seconds=args.retry_seconds,
            max_reject_share=args.max_reject_share)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if summary.stopped and received:
        return 128 + received[0]
    return 0
