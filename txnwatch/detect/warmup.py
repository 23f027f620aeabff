"""Warm the JVM before the first chunk: run the job's Spark plans on a throw-away chunk.

A cold Spark spends a second or more on class loading and code generation for the first query of
each shape; chunk 1 would pay that (and every chunk behind it would wait). The job has one plan, the
per-batch read-validate-aggregate (the weights are Arrow's, on the driver). Running it on synthetic data
of the same shape moves that cost to start-up, before the job reports it is ready.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from txnwatch.core.landing import CANONICAL_COLUMNS, chunk_key
from txnwatch.detect.reader import _native_frame, chunk_deltas
from txnwatch.detect.spark_session import is_connect, master_of, spark_remote

log = logging.getLogger("txnwatch.detect")
_warmed: set[int] = set()


def _synthetic_chunk(rows: int) -> str:
    lines = [",".join(CANONICAL_COLUMNS)]
    lines += [f"{i},C{i * 7919 % 4000},N{i % 4000},M{i % 50},{i % 97}.{i % 100:02d},t{i % 5},{'FMEU'[i % 4]},{i}"
              for i in range(rows)]
    lines.append("x,C1,N")  # one malformed row: the quarantine branch too
    return "\n".join(lines) + "\n"


def _local_master(spark) -> bool:
    """Warm-up reads a driver-local temp file: only meaningful (and only readable) with a local master in
    this process or a local Connect server it started, not on a Databricks cluster, whose executors cannot
    see the driver's /tmp, nor through a Connect server elsewhere (`sc://`)."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return False
    if is_connect(spark) and not spark_remote().startswith("local"):
        return False
    return master_of(spark).startswith("local")


def warm_up(spark, rows: int = 2_000, rounds: int | None = None) -> None:
    """Run the read plan `rounds` times (default 1, or TXNWATCH_SPARK_WARMUP; 0 = skip) on a synthetic
    file, once per session. The first run of a plan pays for class loading
    and code generation whatever the data size, so a small file is enough."""
    if rounds is None:
        rounds = int(os.environ.get("TXNWATCH_SPARK_WARMUP", "1"))
    if id(spark) in _warmed or rounds <= 0 or not _local_master(spark):
        return
    _warmed.add(id(spark))
    run_read_plan(spark, rows, rounds)


def run_read_plan(spark, rows: int = 2_000, rounds: int = 1) -> float:
    """Run the job's read plan `rounds` times on a synthetic chunk in a local temp folder (which the
    session's Spark must be able to read); the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="txnwatch-warmup-") as tmp:
        path = Path(tmp) / chunk_key(1)
        path.parent.mkdir(parents=True)
        path.write_text(_synthetic_chunk(rows))
        for _ in range(rounds):
            chunk_deltas(_native_frame(spark, [str(path)])).toArrow()
    seconds = time.monotonic() - started
    log.info("Spark warmed up in %.1fs", seconds)
    return seconds
