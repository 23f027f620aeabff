"""Small helpers the tests, their fixtures and the tools share: where the checkout is, a free port, waiting."""

from __future__ import annotations

import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The real data set's first 10,000 rows (../shared/data in the project's workspace), kept in the repo so a
# clone anywhere runs the suite.
SAMPLE_CSV = ROOT / "tests" / "data" / "banksim_transactions_first10000.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll `condition` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
