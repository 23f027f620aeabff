"""Mechanism Y: poll the landing zone, run each batch of chunks through Spark, commit, write files.

One batch is normally one chunk; when the job is behind it takes up to `max_batch_chunks` landed
chunks at once (the rules are evaluated as of each chunk, so the detections do not change).

Per batch: one Spark job reads, validates and aggregates the chunks (collected once as Arrow: one
row per chunk, customer and merchant); the driver folds those deltas into the in-memory state chunk
by chunk and evaluates the rules incrementally (live_state.py); one Postgres transaction writes what
changed, the new detections, metrics and the checkpoint. Files are written after the commit
(output.py).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from txnwatch.core import defaults
from txnwatch.core.config import Thresholds
from txnwatch.core.db import Link, init_schema, redact, resolve_db_url, scrub
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.failures import job_failures
from txnwatch.core.landing import END_KEY, REFERENCE_KEY, chunk_key
from txnwatch.core.retry import RetryPolicy
from txnwatch.core.stats import percentile
from txnwatch.core.storage import Store, open_store
from txnwatch.detect import state
from txnwatch.detect.live_state import LiveState, Match
from txnwatch.detect.output import write_pending
from txnwatch.detect.patterns import PATTERNS
from txnwatch.detect.reader import read_deltas, read_importance
from txnwatch.detect.warmup import warm_up
from txnwatch.detect.weights import Weights, collect_weights, compute_weights

log = logging.getLogger("txnwatch.detect")
HEARTBEAT_S = 1.0  # y_checkpoint.heartbeat_at is at most this old while Y runs (plus one batch)


@dataclass
class DetectSummary:
    chunks: int = 0
    rows: int = 0
    quarantined_rows: int = 0
    quarantined_chunks: int = 0
    detections: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    files_written: int = 0
    last_chunk: int = 0
    finished: bool = False
    lags: list[float] = field(default_factory=list)


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


class _Batcher:
    """Runs batches against the live state, which it loads from Postgres on first use and again after
    a batch that did not commit (memory may then be ahead of what Postgres holds)."""

    def __init__(self, spark, link: Link, schema: str, landing: Store, th: Thresholds, y_start: datetime) -> None:
        self.spark, self.link, self.schema, self.landing, self.th = spark, link, schema, landing, th
        self.y_start = y_start
        self._weights: Future[Weights] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="txnwatch-weights")
        self._live: LiveState | None = None

    def _load_weights(self) -> Weights:
        importance = read_importance(self.spark, self.landing)
        if importance is None:
            return Weights({}, {})
        weights = collect_weights(compute_weights(importance))
        log.info("weights for %d (customer, merchant) and %d merchant-less keys", len(weights), len(weights.generic))
        return weights

    def prefetch_weights(self) -> None:
        """Start loading the weights in the background once the reference is published: they take a
        moment, and only PatId1 on a merchant past the volume bar has to wait for them."""
        if self._weights is None and self.landing.exists(REFERENCE_KEY):
            self._weights = self._pool.submit(self._load_weights)

    def weights(self) -> Weights:
        if self._weights is None:  # needed before the reference was seen: absent (warned once)
            self._weights = self._pool.submit(self._load_weights)
        return self._weights.result()

    @property
    def conn(self) -> psycopg.Connection:
        return self.link.conn

    def reset(self) -> None:
        """After an outage: reload the state before the next batch, and the weights if their load failed."""
        self._live = None
        if self._weights is not None and self._weights.done() and self._weights.exception() is not None:
            self._weights = None

    def live(self) -> LiveState:
        if self._live is None:
            started = time.monotonic()
            live = LiveState(self.th, self.weights)
            state.load_state(self.conn, self.schema, live)
            self._live = live
            log.info("state loaded: %d (customer, merchant) pairs, %d merchants in %.2fs", live.pairs.size,
                     live.merchants.size, time.monotonic() - started)
        return self._live

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self, chunks: list[int], summary: DetectSummary) -> None:
        conn, schema = self.conn, self.schema
        live = self.live()
        t0 = time.monotonic()
        collected, reads = read_deltas(self.spark, self.landing, chunks)
        t_read = time.monotonic() - t0
        if collected is None:  # no readable chunk in the batch
            staged, bad = state.DELTA_ARROW.empty_table(), []
        else:
            staged = collected.filter(pc.equal(collected["kind"], "d")).select(state.DELTA_ARROW.names)
            bad = collected.filter(pc.equal(collected["kind"], "q")).to_pylist()
        quarantine = [(r["chunk"], r["line"], r["reason"], r["raw"]) for r in bad]
        quarantine += [(r.chunk, None, r.unreadable, None) for r in reads if r.unreadable]

        try:
            with conn.transaction():
                if not state.begin_batch(conn, schema, chunks[0]):
                    log.warning("chunks %d-%d already committed: skipped", chunks[0], chunks[-1])
                    return
                t1 = time.monotonic()
                changes = live.apply_batch(staged)
                t_rules = time.monotonic() - t1
                t2 = time.monotonic()
                state.write_changes(conn, schema, changes)
                metrics = self._metrics(conn, chunks, staged, bad, changes.matches)
                committed_at = state.commit_batch(conn, schema, chunks[-1], changes.matches, datetime.now(UTC),
                                                  self.y_start, metrics, quarantine, len(chunks),
                                                  time.monotonic() - t0)
        except BaseException:
            self._live = None  # memory may be ahead of Postgres: reload before the next batch
            raise
        timing = (f"read {t_read:.2f}s, rules {t_rules:.3f}s, write+commit {time.monotonic() - t2:.2f}s, "
                  f"total {time.monotonic() - t0:.2f}s")

        for m in metrics:
            lag = (committed_at - m.landed_at).total_seconds() if m.landed_at else None
            if lag is not None:
                summary.lags.append(lag)
            summary.rows += m.rows
            summary.quarantined_rows += m.quarantined
            for p, v in m.pat.items():
                summary.detections[p] += v
            log.info("chunk %d: %d rows, %d quarantined, new %s, lag %s (%s%s)", m.chunk, m.rows, m.quarantined,
                     " ".join(f"{p}={v}" for p, v in m.pat.items()),
                     f"{lag:.3f}s" if lag is not None else "n/a", timing,
                     f", batch {chunks[0]}-{chunks[-1]}" if len(chunks) > 1 else "")
        summary.chunks += len(chunks)
        summary.quarantined_chunks += sum(1 for r in reads if r.unreadable)
        summary.last_chunk = chunks[-1]

    def _metrics(self, conn: psycopg.Connection, chunks: list[int], staged: pa.Table, bad: list[dict],
                 matches: list[Match]) -> list[state.ChunkMetrics]:
        rows = dict.fromkeys(chunks, 0)
        if staged.num_rows:
            sums = staged.group_by("chunk").aggregate([("n", "sum")])
            rows.update(zip(sums["chunk"].to_pylist(), sums["n_sum"].to_pylist(), strict=True))
        landed = state.landed_times(conn, self.schema, self.landing.url, chunks)
        metrics = []
        for k in chunks:
            at = landed.get(k)
            if at is None:  # an outside producer: the object's time is the best we have
                mt = self.landing.mtime(chunk_key(k))
                at = datetime.fromtimestamp(mt, UTC) if mt is not None else None
            pat = dict.fromkeys(PATTERNS, 0)
            for d in matches:
                if d.chunk == k:
                    pat[d.pattern_id] += 1
            metrics.append(state.ChunkMetrics(k, rows[k], sum(1 for r in bad if r["chunk"] == k), at, pat))
        return metrics


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
        self.batcher: _Batcher | None = None
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
        conn = self.link.conn
        state.mark_ready(conn, self.schema)
        log.info("detect: landing %s, output %s, db %s schema %s, resuming after chunk %d",
                 self.landing.url, self.output.url, redact(self.db_url), self.schema, self.last)
        # A crash between commit and file write leaves groups unwritten: repair them first.
        self.summary.files_written += write_pending(conn, self.schema, self.output, final=self.finished)
        self.batcher = _Batcher(spark, self.link, self.schema, self.landing, self.th, self.y_start)

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
        b.prefetch_weights()
        limit = self.max_batch_chunks
        if self.end_chunks is not None:
            limit = min(limit, self.end_chunks - self.last)
        chunks = _probe(self.landing, self.last + 1, limit) if limit > 0 else []
        if chunks:
            b.run(chunks, self.summary)
            self.last = chunks[-1]
            self.summary.files_written += write_pending(conn, self.schema, self.output, final=False)
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

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.link.close()


def _log_summary(s: DetectSummary) -> None:
    def sec(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}s"

    log.info("summary: %d chunks, %d rows, %d rows and %d chunks quarantined, new detections %s, %d files, "
             "last chunk %d%s, lag p50 %s p95 %s max %s", s.chunks, s.rows, s.quarantined_rows,
             s.quarantined_chunks, " ".join(f"{p}={v}" for p, v in s.detections.items()), s.files_written,
             s.last_chunk, " (finished)" if s.finished else "", sec(percentile(s.lags, 0.5)),
             sec(percentile(s.lags, 0.95)), sec(max(s.lags) if s.lags else None))


def command(args) -> int:
    stop = threading.Event()

    def on_term(signum, frame):  # Airflow and Databricks stop a task with SIGTERM: finish the batch, exit.
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    run_detect(args.landing, args.output, resolve_db_url(args.db), args.schema, until_end=args.until_end,
               poll_interval=args.poll_interval, max_batch_chunks=args.max_batch_chunks,
               thresholds=Thresholds.from_overrides(args.threshold), stop=stop, retry_seconds=args.retry_seconds)
    log.info("detect finished in %.1fs", time.monotonic() - started)
    return 0
