"""The one percentile definition of the project: linear interpolation between the closest ranks.

It is numpy's default and PostgreSQL's `percentile_cont`, which is what the read side's SQL uses
(`sql/records.sql`); Python code with the values in hand (Y's summary line, the soak tool) calls this.
"""

from __future__ import annotations

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of `values`, linear between closest ranks; None when there are none."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
