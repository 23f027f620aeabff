"""Time the plain-Python reference (tests/reference_rules.py) on a landing zone: prints
{"seconds": ..., "chunks": ..., "detections": ...}; with --out FILE, also writes its detections in order as
JSON [patternId, ActionType, customerName, merchantId, chunk] lists; --threshold NAME=VALUE as `txnwatch detect`
takes it. Run by tools/bench.py in its own process
(`python -m tools.reference_run LANDING [--out FILE] [--threshold NAME=VALUE ...]`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tests.reference_rules import detect_store
from txnwatch.core.config import Thresholds
from txnwatch.core.landing import REFERENCE_KEY, chunk_key
from txnwatch.core.storage import open_store

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tools.reference_run")
    parser.add_argument("landing")
    parser.add_argument("--out", type=Path, help="write the detections here (JSON)")
    parser.add_argument("--threshold", action="append", metavar="NAME=VALUE", help="override a rule threshold")
    args = parser.parse_args()
    store = open_store(args.landing)
    started = time.monotonic()
    found = detect_store(store, REFERENCE_KEY, Thresholds.from_overrides(args.threshold))
    seconds = time.monotonic() - started
    chunks = next(k for k in range(1, 1 << 30) if not store.exists(chunk_key(k))) - 1
    if args.out:
        args.out.write_text(json.dumps([[d.pattern_id, d.action, d.customer_name, d.merchant_id, d.chunk]
                                        for d in found]))
    print(json.dumps({"seconds": seconds, "chunks": chunks, "detections": len(found)}))
