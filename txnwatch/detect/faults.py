"""Deterministic fault points for the kill and outage tests.

`TXNWATCH_FAULT=after_commit:3` makes the process die with `os._exit(137)` (as if killed -9) the third
time it reaches the point named `after_commit`. In-process tests can instead attach an action to a
point with `on()` (e.g. cut the database connection there). Unset (production), `fault()` is two
dictionary lookups.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

_counts: dict[str, int] = {}
_actions: dict[str, Callable[[], None]] = {}


def on(point: str, action: Callable[[], None] | None) -> None:
    """Run `action` each time the point is reached (None removes it). For tests."""
    if action is None:
        _actions.pop(point, None)
    else:
        _actions[point] = action


def _spec() -> tuple[str, int] | None:
    raw = os.environ.get("TXNWATCH_FAULT", "")
    if not raw:
        return None
    name, _, nth = raw.partition(":")
    return name, int(nth or 1)


def fault(point: str) -> None:
    """Run the point's action, if any; die here if TXNWATCH_FAULT names it and this is its n-th visit."""
    action = _actions.get(point)
    if action is not None:
        action()
    spec = _spec()
    if spec is None or spec[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == spec[1]:
        sys.stderr.write(f"txnwatch: injected fault at {point} (visit {spec[1]})\n")
        sys.stderr.flush()
        os._exit(137)
