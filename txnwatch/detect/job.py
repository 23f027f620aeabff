"""Mechanism Y's loop: poll the landing zone, run each batch of landed chunks, write the files.

One batch is normally one chunk; when the job is behind it takes up to `max_batch_chunks` landed
chunks at once (the rules are evaluated as of each chunk, so the detections do not change). What a
batch does, read -> apply -> commit, is batch.py's; the files are written after the commit (output.py).
Every step of the loop can be re-run after an outage (`_Loop.recover`).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime

from txnwatch.core import defaults
from txnwatch.core.config import Thresholds
from txnwatch.core.db import Link, init_schema, redact, resolve_db_url, scrub
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.failures import job_failures
from txnwatch.core.landing import END_KEY, chunk_key
from txnwatch.core.retry import RetryPolicy
from txnwatch.core.stats import percentile
from txnwatch.core.storage import Store, open_store
from txnwatch.detect import state
from txnwatch.detect.batch import Batches, DetectSummary
from txnwatch.detect.output import write_pending
from txnwatch.detect.warmup import warm_up

log = logging.getLogger("txnwatch.detect")
HEARTBEAT_S = 1.0  # y_checkpoint.heartbeat_at is at most this old while Y runs (plus one batch)


def _read_end(store: Store) -> int | None:
    if not store.exists(END_KEY):
        return None
    try:
        return int(json.loads(store.get(END_KEY))["chunks"])
    except (ValueError, KeyError, TypeError) as e:
        raise TxnwatchError(f"{store.uri(END_KEY)} is not valid: {e}") from None


def _probe(store: Store, first: int, limit: int) -> list[int]:
    """The consecutive landed chunks from `first`, at most `limit`."""
    found = []
    for k in range(first, first + limit):
        if not store.exists(chunk_key(k)):
            break
        found.append(k)
    return found


def run_detect(landing: str, output: str, db_url: str, schema: str = defaults.SCHEMA, until_end: bool = False,
               poll_interval: float = defaults.POLL_INTERVAL_S, max_batch_chunks: int = defaults.MAX_BATCH_CHUNKS,
               thresholds: Thresholds | None = None,
               spark=None, s3_client=None, stop: threading.Event | None = None,
               retry_seconds: float = defaults.RETRY_SECONDS) -> DetectSummary:
    """Run Mechanism Y until `stop` is set (or, with until_end, the last chunk is processed).

    An outage of PostgreSQL or the object store pauses the job for up to `retry_seconds` (retry.py).
    """
    stop = stop or threading.Event()
    loop = _Loop(landing, output, db_url, schema, thresholds or Thresholds(), max_batch_chunks, s3_client,
                 RetryPolicy(retry_seconds, stop, describe=lambda e: scrub(first_line(e))))
    try:
        with job_failures(db_url, "S3 failed"):
            loop.policy.run(loop.start, loop.recover)
            if spark is None:
                from txnwatch.detect.spark_session import get_spark

                spark = get_spark()
            warm_up(spark)
            loop.policy.run(lambda: loop.ready(spark), loop.recover)
            while not stop.is_set():
                outcome = loop.policy.run(loop.step, loop.recover)
                if outcome == "done" and until_end:
                    break
                if outcome != "busy":
                    stop.wait(poll_interval)
    finally:
        loop.close()
    _log_summary(loop.summary)
    return loop.summary


class _Loop:
    """Y's main loop in steps that can each be re-run after an outage (see `recover`)."""

    def __init__(self, landing: str, output: str, db_url: str, schema: str, th: Thresholds, max_batch_chunks: int,
                 s3_client, policy: RetryPolicy) -> None:
        self.landing_url, self.output_url, self.db_url, self.schema = landing, output, db_url, schema
        self.th, self.max_batch_chunks, self.s3_client, self.policy = th, max_batch_chunks, s3_client, policy
        self.link = Link(db_url, setup=state.job_lock(schema), autocommit=True)
        self.summary = DetectSummary()
        self.started = False  # start() completed: the stores are open and the checkpoint exists
        self.batcher: Batches | None = None
        self.last, self.finished, self.end_chunks = 0, False, None
        self.beat = time.monotonic()

    def start(self) -> None:
        self.landing = open_store(self.landing_url, client=self.s3_client)
        self.output = open_store(self.output_url, client=self.s3_client)
        conn = self.link.conn
        init_schema(conn, self.schema)
        self.last, self.finished = state.ensure_checkpoint(conn, self.schema, self.landing.url, self.output.url)
        self.summary.last_chunk, self.summary.finished = self.last, self.finished
        self.y_start = datetime.now(UTC)
        state.mark_started(conn, self.schema, self.y_start)
        self.started = True

    def ready(self, spark) -> None:
        """The state in memory (after a restart: with its order statistics, so the first batch costs what
        any batch does), then the readiness mark."""
        conn = self.link.conn
        if self.batcher is None:
            self.batcher = Batches(spark, self.link, self.schema, self.landing, self.th, self.y_start)
        self.batcher.live()
        state.mark_ready(conn, self.schema)
        log.info("detect: landing %s, output %s, db %s schema %s, resuming after chunk %d",
                 self.landing.url, self.output.url, redact(self.db_url), self.schema, self.last)
        # A crash between commit and file write leaves groups unwritten: repair them first.
        self.summary.files_written += write_pending(conn, self.schema, self.output, final=self.finished)

    def recover(self) -> None:
        """Before a re-run: a new connection (and job lock), the checkpoint as committed, the state
        reloaded from Postgres (memory may be ahead of it, or behind a commit whose answer was lost)."""
        conn = self.link.reconnect()
        if not self.started:  # the outage hit start-up: start() runs again whole
            return
        self.last, self.finished = state.ensure_checkpoint(conn, self.schema, self.landing.url, self.output.url)
        if self.batcher is not None:
            self.batcher.reset()

    def step(self) -> str:
        """One look at the landing zone: "busy" (a batch ran), "idle" (nothing yet) or "done"."""
        conn, b = self.link.conn, self.batcher
        if time.monotonic() - self.beat >= HEARTBEAT_S:
            state.heartbeat(conn, self.schema)
            self.beat = time.monotonic()
        chunks = b.read_ahead_from(self.last + 1) or self._landed_after(self.last)
        if chunks:
            b.run(chunks, self.summary, landed_after=self._landed_after)
            self.last = chunks[-1]
            self.summary.files_written += write_pending(conn, self.schema, self.output, final=False)
        # After the batch, not before it: X publishes the reference with chunk 1, which then goes first.
        b.prefetch_weights()
        if chunks:
            return "busy"
        if self.end_chunks is None:
            self.end_chunks = _read_end(self.landing)
            if self.end_chunks is not None and self.end_chunks > self.last:
                return "busy"  # probe again now that the end is known
        if self.end_chunks is not None and self.last >= self.end_chunks:
            if not self.finished:
                self.summary.files_written += write_pending(conn, self.schema, self.output, final=True)
                state.mark_finished(conn, self.schema)
                self.finished = self.summary.finished = True
                log.info("processed the last chunk (%d) that %s counts; output flushed", self.end_chunks, END_KEY)
            return "done"
        return "idle"

    def _landed_after(self, last: int) -> list[int]:
        """The next batch: the consecutive landed chunks after chunk `last`, up to the batch size and the end."""
        limit = self.max_batch_chunks
        if self.end_chunks is not None:
            limit = min(limit, self.end_chunks - last)
        return _probe(self.landing, last + 1, limit) if limit > 0 else []

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(self.summary)
        self.link.close()


def _log_summary(s: DetectSummary) -> None:
    def sec(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}s"

    log.info("summary: %d chunks, %d rows, %d rows and %d chunks quarantined, new detections %s, %d files, "
             "last chunk %d%s, lag p50 %s p95 %s max %s, state %d pairs in %d bytes", s.chunks, s.rows,
             s.quarantined_rows, s.quarantined_chunks, " ".join(f"{p}={v}" for p, v in s.detections.items()),
             s.files_written, s.last_chunk, " (finished)" if s.finished else "", sec(percentile(s.lags, 0.5)),
             sec(percentile(s.lags, 0.95)), sec(max(s.lags) if s.lags else None), s.state_pairs, s.state_bytes)


def command(args) -> int:
    stop = threading.Event()

    def on_term(signum, frame):  # Airflow and Databricks stop a task with SIGTERM: finish the batch, exit.
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    db_url = args.db
    if args.db_secret:
        from txnwatch.detect.secrets import read_secret

        db_url = read_secret(args.db_secret)
    run_detect(args.landing, args.output, resolve_db_url(db_url), args.schema, until_end=args.until_end,
               poll_interval=args.poll_interval, max_batch_chunks=args.max_batch_chunks,
               thresholds=Thresholds.from_overrides(args.threshold), stop=stop, retry_seconds=args.retry_seconds)
    log.info("detect finished in %.1fs", time.monotonic() - started)
    return 0
