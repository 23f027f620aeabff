"""Time the plain-Python reference (tests/reference_rules.py) on a landing zone: prints
{"seconds": ..., "detections": ...}. Run by tools/bench.py in its own process."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference_rules import detect_store  # noqa: E402

from txnwatch.config import Thresholds  # noqa: E402
from txnwatch.landing import REFERENCE_KEY  # noqa: E402
from txnwatch.storage import open_store  # noqa: E402

if __name__ == "__main__":
    started = time.monotonic()
    found = detect_store(open_store(sys.argv[1]), REFERENCE_KEY, Thresholds())
    print(json.dumps({"seconds": time.monotonic() - started, "detections": len(found)}))
