"""Time the plain-Python reference (tests/reference_rules.py) on a landing zone: prints
{"seconds": ..., "detections": ...}. Run by tools/bench.py in its own process
(`python -m tools.reference_run LANDING`)."""

from __future__ import annotations

import json
import sys
import time

from tests.reference_rules import detect_store
from txnwatch.core.config import Thresholds
from txnwatch.core.landing import REFERENCE_KEY
from txnwatch.core.storage import open_store

if __name__ == "__main__":
    started = time.monotonic()
    found = detect_store(open_store(sys.argv[1]), REFERENCE_KEY, Thresholds())
    print(json.dumps({"seconds": time.monotonic() - started, "detections": len(found)}))
