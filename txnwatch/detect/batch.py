"""One batch of chunks on its way through Y, in one direction: read -> apply -> commit (files follow, by
the loop). `Batch` carries the data from step to step; `Batches` runs them against the live state, which it
loads from PostgreSQL on first use and again after a batch that did not commit (memory may then be ahead of
what PostgreSQL holds), and keeps the weights loading in the background.

When Y is behind, the next batch's Spark read runs while this one is applied and committed: the read needs
only the landed chunks (immutable), not the state, and during the commit the JVM would otherwise be idle
while PostgreSQL works in its own process. The batches are still applied and committed one at a time, in
order; a read-ahead that the loop does not take (after an outage) is dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from txnwatch.core.config import Thresholds
from txnwatch.core.db import Link
from txnwatch.core.landing import REFERENCE_KEY, chunk_key
from txnwatch.core.storage import Store
from txnwatch.detect import state
from txnwatch.detect.live_state import BatchChanges, LiveState
from txnwatch.detect.reader import ChunkRead, read_deltas, read_importance
from txnwatch.detect.shapes import DELTA, PATTERNS
from txnwatch.detect.weights import Weights, weights_from_importance

log = logging.getLogger("txnwatch.detect")


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
    state_pairs: int = 0  # (customer, merchant) pairs in memory at the end, and their arrays' bytes
    state_bytes: int = 0


@dataclass
class Batch:
    chunks: list[int]
    deltas: pa.Table  # shapes.DELTA rows
    rejected: list[dict]  # the rows the reader rejected (kind "q")
    reads: list[ChunkRead]
    started: float  # time.monotonic() when the read began
    read_s: float
    changes: BatchChanges | None = None
    rules_s: float = 0.0
    metrics: list[state.ChunkMetrics] = field(default_factory=list)
    committed_at: datetime | None = None
    write_started: float = 0.0

    @classmethod
    def read(cls, spark, landing: Store, chunks: list[int]) -> Batch:
        """One Spark job over the chunks, collected once as Arrow."""
        started = time.monotonic()
        collected, reads = read_deltas(spark, landing, chunks)
        read_s = time.monotonic() - started
        if collected is None:  # no readable chunk in the batch
            deltas, rejected = DELTA.empty_table(), []
        else:
            deltas = collected.filter(pc.equal(collected["kind"], "d")).select(DELTA.names)
            rejected = collected.filter(pc.equal(collected["kind"], "q")).to_pylist()
        return cls(chunks, deltas, rejected, reads, started, read_s)

    @property
    def quarantine(self) -> list[tuple[int, int | None, str, str | None]]:
        """y_quarantine rows: the rejected rows, then the chunks that could not be read at all."""
        rows = [(r["chunk"], r["line"], r["reason"], r["raw"]) for r in self.rejected]
        return rows + [(r.chunk, None, r.unreadable, None) for r in self.reads if r.unreadable]

    def apply(self, live: LiveState) -> None:
        """Fold the deltas into the live state chunk by chunk, evaluating the rules after each."""
        t = time.monotonic()
        self.changes = live.apply_batch(self.deltas)
        self.rules_s = time.monotonic() - t

    def commit(self, conn: psycopg.Connection, schema: str, landing: Store, y_start: datetime) -> None:
        """Inside the batch's transaction: what changed, the detections, metrics, quarantine, checkpoint."""
        self.write_started = time.monotonic()
        state.write_changes(conn, schema, self.changes)
        self.metrics = self._metrics(conn, schema, landing)
        self.committed_at = state.commit_batch(conn, schema, self.chunks[-1], self.changes.matches,
                                               datetime.now(UTC), y_start, self.metrics, self.quarantine,
                                               len(self.chunks), time.monotonic() - self.started)

    def _metrics(self, conn: psycopg.Connection, schema: str, landing: Store) -> list[state.ChunkMetrics]:
        rows = dict.fromkeys(self.chunks, 0)
        if self.deltas.num_rows:
            sums = self.deltas.group_by("chunk").aggregate([("n", "sum")])
            rows.update(zip(sums["chunk"].to_pylist(), sums["n_sum"].to_pylist(), strict=True))
        landed = state.landed_times(conn, schema, landing.url, self.chunks)
        metrics = []
        for k in self.chunks:
            at = landed.get(k)
            if at is None:  # an outside producer: the object's time is the best we have
                mt = landing.mtime(chunk_key(k))
                at = datetime.fromtimestamp(mt, UTC) if mt is not None else None
            pat = dict.fromkeys(PATTERNS, 0)
            for d in self.changes.matches:
                if d.chunk == k:
                    pat[d.pattern_id] += 1
            metrics.append(state.ChunkMetrics(k, rows[k], sum(1 for r in self.rejected if r["chunk"] == k), at, pat))
        return metrics

    def account(self, summary: DetectSummary) -> None:
        """After the commit: one log line per chunk, and the run's summary."""
        timing = (f"read {self.read_s:.2f}s, rules {self.rules_s:.3f}s, write+commit "
                  f"{time.monotonic() - self.write_started:.2f}s, total {time.monotonic() - self.started:.2f}s")
        chunks = self.chunks
        for m in self.metrics:
            lag = (self.committed_at - m.landed_at).total_seconds() if m.landed_at else None
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
        summary.quarantined_chunks += sum(1 for r in self.reads if r.unreadable)
        summary.last_chunk = chunks[-1]


def _yield_to_batches() -> None:
    """Run this (background) thread at the lowest CPU priority: on Linux a thread has its own nice value,
    so the weights' load takes only what the batches leave, instead of doubling the first chunks' cost.
    Its Arrow calls run single-threaded, on this thread, for the same reason."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux: an ordinary thread
        pass


class Batches:
    """Runs batches against the live state (see the module's docstring)."""

    def __init__(self, spark, link: Link, schema: str, landing: Store, th: Thresholds, y_start: datetime) -> None:
        self.spark, self.link, self.schema, self.landing, self.th = spark, link, schema, landing, th
        self.y_start = y_start
        self._weights: Future[Weights] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="txnwatch-weights")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="txnwatch-read-ahead")
        self._ahead: tuple[list[int], Future[Batch]] | None = None
        self._live: LiveState | None = None

    def _load_weights(self) -> Weights:
        _yield_to_batches()
        started = time.monotonic()
        importance = read_importance(self.landing)
        if importance is None:
            return Weights.from_pairs({}, {})
        weights = weights_from_importance(importance)
        log.info("weights for %d (customer, merchant) and %d merchant-less keys from %d rows, in %.2fs",
                 len(weights), weights.generic_count, importance.num_rows, time.monotonic() - started)
        return weights

    def prefetch_weights(self) -> None:
        """Start loading the weights in the background once the reference is published: they take a
        moment (Arrow on the driver, which releases the GIL while the batches run), and only PatId1 on a
        merchant past the volume bar has to wait for them."""
        if self._weights is None and self.landing.exists(REFERENCE_KEY):
            self._weights = self._pool.submit(self._load_weights)

    def weights(self) -> Weights:
        if self._weights is None:  # needed before the reference was seen: absent (warned once)
            self._weights = self._pool.submit(self._load_weights)
        return self._weights.result()

    def reset(self) -> None:
        """After an outage: reload the state before the next batch, and the weights if their load failed;
        drop the read-ahead (it may have failed with the outage)."""
        self._live = None
        self._ahead = None
        if self._weights is not None and self._weights.done() and self._weights.exception() is not None:
            self._weights = None

    def live(self) -> LiveState:
        if self._live is None:
            started = time.monotonic()
            self.prefetch_weights()  # Arrow aggregates the weights while Postgres hands over the state
            live = LiveState(self.th, self.weights)
            state.load_state(self.link.conn, self.schema, live)
            loaded = time.monotonic()
            live.prepare()
            self._live = live
            log.info("state loaded: %d (customer, merchant) pairs, %d merchants, %.1f MB, in %.2fs "
                     "(order statistics %.2fs)", live.pairs.size, live.merchants.size, live.nbytes / 2**20,
                     time.monotonic() - started, time.monotonic() - loaded)
        return self._live

    def close(self, summary: DetectSummary | None = None) -> None:
        """Stop the weights' load; record the state's size in `summary`."""
        if summary is not None and self._live is not None:
            summary.state_pairs, summary.state_bytes = int(self._live.pairs.size), int(self._live.nbytes)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._reader.shutdown(wait=False, cancel_futures=True)

    def read_ahead_from(self, first: int) -> list[int] | None:
        """The chunks of the read-ahead if it starts at chunk `first` (the next batch is then those)."""
        if self._ahead is not None and self._ahead[0][0] == first:
            return self._ahead[0]
        return None

    def _read(self, chunks: list[int]) -> Batch:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == chunks:
            return ahead[1].result()
        return Batch.read(self.spark, self.landing, chunks)

    def run(self, chunks: list[int], summary: DetectSummary,
            landed_after: Callable[[int], list[int]] | None = None) -> None:
        """Read (or take the read-ahead of), apply and commit `chunks`. `landed_after(k)` gives the chunks
        landed after chunk k, up to a batch: their read starts now, to overlap this batch's commit."""
        conn = self.link.conn
        live = self.live()
        batch = self._read(chunks)
        following = landed_after(chunks[-1]) if landed_after is not None else []
        if following:
            self._ahead = (following, self._reader.submit(Batch.read, self.spark, self.landing, following))
        try:
            with conn.transaction():
                if not state.begin_batch(conn, self.schema, chunks[0]):
                    log.warning("chunks %d-%d already committed: skipped", chunks[0], chunks[-1])
                    return
                batch.apply(live)
                batch.commit(conn, self.schema, self.landing, self.y_start)
        except BaseException:
            self._live = None  # memory may be ahead of Postgres: reload before the next batch
            raise
        batch.account(summary)
