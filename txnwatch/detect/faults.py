"""Deterministic crash points for the kill tests.

`TXNWATCH_FAULT=after_commit:3` makes the process die with `os._exit(137)` (as if killed -9) the third
time it reaches the point named `after_commit`. Unset (production), `fault()` is a dictionary lookup.
"""

from __future__ import annotations

import os
import sys

_counts: dict[str, int] = {}


def _spec() -> tuple[str, int] | None:
    raw = os.environ.get("TXNWATCH_FAULT", "")
    if not raw:
        return None
    name, _, nth = raw.partition(":")
    return name, int(nth or 1)


def fault(point: str) -> None:
    """Die here if TXNWATCH_FAULT names this point and this is its n-th visit."""
    spec = _spec()
    if spec is None or spec[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == spec[1]:
        sys.stderr.write(f"txnwatch: injected fault at {point} (visit {spec[1]})\n")
        sys.stderr.flush()
        os._exit(137)
