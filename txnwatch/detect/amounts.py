"""Exact running amount sums in numpy: decimal(38, 10) values as 128-bit integers in two int64 lanes.

Amounts are decimal(38, 10) (Spark's cast, Postgres' numeric(38, 10)); a float64 running sum would
drift with the number of additions and make a CHILD decision near the threshold depend on how the
stream was batched or when Y last restarted. Arrow stores a decimal128 as a little-endian 128-bit
integer (the value times 10^10), so the sums are kept in that form, as a (low uint64, high int64)
pair per key, and added with an explicit carry: exact, vectorised, and converted to and from Arrow
without a Python object per value.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from txnwatch.detect.shapes import AMOUNT, AMOUNT_SCALE

SCALE = AMOUNT_SCALE
DECIMAL = AMOUNT
_TWO_64 = float(2**64)


def lanes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(low uint64, high int64) copies of a decimal128(38, 10) array without nulls."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], DECIMAL)
    if values.type != DECIMAL:
        values = values.cast(DECIMAL)
    if values.null_count:
        raise ValueError("amount sums must not be null")
    words = np.frombuffer(values.buffers()[1], dtype=np.uint64)
    words = words[2 * values.offset:2 * (values.offset + len(values))].reshape(-1, 2)
    return words[:, 0].copy(), words[:, 1].view(np.int64).copy()


def add(lo: np.ndarray, hi: np.ndarray, at: np.ndarray, d_lo: np.ndarray, d_hi: np.ndarray) -> None:
    """lo/hi[at] += d (in place); `at` holds distinct positions."""
    old = lo[at]
    new = old + d_lo  # uint64 wraps: the carry is whether it did
    lo[at] = new
    hi[at] += d_hi + (new < old).astype(np.int64)


def to_float(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The values as float64 (what the CHILD mean compares; the tolerance absorbs the rounding).

    A value that fits in int64 (every realistic sum) converts with a single rounding; only larger ones
    combine the lanes, where the relative error stays at float64's."""
    fits = ((hi == 0) & (lo < 2**63)) | ((hi == -1) & (lo >= 2**63))
    wide = hi.astype(np.float64) * _TWO_64 + lo.astype(np.float64)
    return np.where(fits, lo.view(np.int64).astype(np.float64), wide) / 10.0**SCALE


def to_arrow(lo: np.ndarray, hi: np.ndarray) -> pa.Array:
    words = np.empty((len(lo), 2), dtype=np.uint64)
    words[:, 0] = lo
    words[:, 1] = hi.view(np.uint64)
    return pa.Array.from_buffers(DECIMAL, len(lo), [None, pa.py_buffer(words.tobytes())])
