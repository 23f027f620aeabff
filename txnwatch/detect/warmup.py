"""Warm the JVM before the first chunk: run the job's Spark plans once on a tiny throw-away chunk.

A cold Spark spends seconds on class loading, JIT and code generation for the first query of each
shape; chunk 1 would pay that (and every chunk behind it would wait). Warming with plans of the same
shape moves the cost to start-up, before the job reports it is ready, and fills the codegen cache.
"""

from __future__ import annotations

import logging
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from txnwatch.config import Thresholds
from txnwatch.detect.asof import CUSTOMER_ARROW, MERCHANT_ARROW
from txnwatch.detect.reader import CORRUPT, _native_frame, chunk_deltas
from txnwatch.detect.rules import evaluate
from txnwatch.detect.weights import collect_weights, compute_weights
from txnwatch.landing import CANONICAL_COLUMNS, IMPORTANCE_COLUMNS, chunk_key

log = logging.getLogger("txnwatch.detect")


def warm_up(spark, th: Thresholds) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="txnwatch-warmup-") as tmp:
        path = Path(tmp) / chunk_key(1)
        path.parent.mkdir(parents=True)
        path.write_text(",".join(CANONICAL_COLUMNS) + "\n" + "0,C1,N,M1,1.50,t,F,0\n" + "1,C1,N\n")
        raw = _native_frame(spark, [str(path)])
        chunk_deltas(raw).toArrow()
        spark.createDataFrame(pa.table({c: ["C1"] for c in (*CANONICAL_COLUMNS, CORRUPT)})).count()
    customers = pa.table({"chunk": [1], "customer_id": ["C1"], "merchant_id": ["M1"], "n": [1],
                          "s": [Decimal("1.5")], "name": ["N"], "w": [1.0], "touched": [True], "total": [1]},
                         schema=CUSTOMER_ARROW)
    merchants = pa.table({"chunk": [1], "merchant_id": ["M1"], "total": [1], "f": [1], "m": [0]},
                         schema=MERCHANT_ARROW)
    evaluate(spark.createDataFrame(customers), spark.createDataFrame(merchants), th).toArrow()
    imp = pa.table({c: ["C1"] if c != "weight" else ["1"] for c in IMPORTANCE_COLUMNS})
    collect_weights(compute_weights(spark.createDataFrame(imp)))
    log.debug("Spark warmed up in %.1fs", time.monotonic() - started)
