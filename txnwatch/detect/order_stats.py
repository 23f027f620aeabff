"""Per-merchant order statistics for UPGRADE (PatId1), kept current as chunks arrive.

For a merchant past the volume bar the rule needs, after every chunk, the P90 of n(x, m) over all
its customers and the P10 of w(x, m) over those with a weight. Both are maintained so that a chunk
costs what it touches, not what the merchant has accumulated:

- counts: a histogram (hist[v] = customers with n = v). A touched customer moves one bucket; the
  value at rank r is found with a cumulative sum over the histogram, whose length is the largest
  count (hundreds), not the number of customers.
- weights: a sorted array, with the customers it belongs to alongside. Weights never change during
  a run, so it changes only when a customer with a weight first buys at the merchant (an insert).

Candidates are the prefix of the sorted weights up to P10 (+ tolerance); they match where
n >= P90 (- tolerance). Percentiles interpolate linearly between closest ranks, as numpy's default
`quantile` does (the lerp below is numpy's, so the two agree to the last bit on the same ranks).
"""

from __future__ import annotations

import numpy as np


def lerp(a: float, b: float, t: float) -> float:
    """numpy's interpolation between two ranks (exact at t = 0 and t = 1)."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def rank_position(size: int, q: float) -> tuple[int, int, float]:
    """(lower rank, upper rank, fraction) of the q-quantile of `size` sorted values."""
    pos = q * (size - 1)
    lo = int(np.floor(pos))
    return lo, min(lo + 1, size - 1), pos - lo


class MerchantOrderStats:
    """Counts histogram and sorted weights of one merchant's customers."""

    def __init__(self, counts: np.ndarray, weights: np.ndarray, pairs: np.ndarray) -> None:
        """counts: n of every customer of the merchant; weights/pairs: the customers with a weight
        (w and their pair index), in any order."""
        self.hist = np.bincount(counts, minlength=2).astype(np.int64)
        self.customers = int(len(counts))
        order = np.argsort(weights, kind="stable")
        self.weights = weights[order]
        self.pairs = pairs[order]

    def update_counts(self, old: np.ndarray, new: np.ndarray) -> None:
        """Customers moved from count `old` to `new` (old = 0: a new customer of the merchant)."""
        if len(new) and new.max() >= len(self.hist):
            grown = np.zeros(max(int(new.max()) + 1, 2 * len(self.hist)), dtype=np.int64)
            grown[:len(self.hist)] = self.hist
            self.hist = grown
        existing = old > 0
        np.subtract.at(self.hist, old[existing], 1)
        np.add.at(self.hist, new, 1)
        self.customers += int(len(old) - existing.sum())

    def add_weights(self, weights: np.ndarray, pairs: np.ndarray) -> None:
        """New customers of the merchant that have a weight."""
        if not len(weights):
            return
        order = np.argsort(weights, kind="stable")
        weights, pairs = weights[order], pairs[order]
        at = np.searchsorted(self.weights, weights, side="right")
        self.weights = np.insert(self.weights, at, weights)
        self.pairs = np.insert(self.pairs, at, pairs)

    def count_percentile(self, q: float) -> float:
        lo, hi, t = rank_position(self.customers, q)
        cum = np.cumsum(self.hist)
        v_lo, v_hi = np.searchsorted(cum, [lo, hi], side="right")
        return lerp(float(v_lo), float(v_hi), t)

    def weight_percentile(self, q: float) -> float | None:
        if not len(self.weights):
            return None
        lo, hi, t = rank_position(len(self.weights), q)
        return lerp(float(self.weights[lo]), float(self.weights[hi]), t)

    def weight_candidates(self, cut: float) -> np.ndarray:
        """Pair indices of the customers whose weight is <= cut (the P10 plus the tolerance)."""
        return self.pairs[:np.searchsorted(self.weights, cut, side="right")]
