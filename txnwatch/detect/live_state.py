"""Y's running state in memory, as numpy columns, and the rules evaluated incrementally on it.

Y holds the schema's job lock, so nobody else changes its state: it loads the state from Postgres
once (at start, and again after a failed batch), keeps it current chunk by chunk, and each batch
writes back only what changed. Postgres stays the durable truth; this is a cache that is exact.

Layout: one row per (customer, merchant) pair and one per merchant, in growable numpy arrays. Customer
ids and names are interned (each distinct string held once, as bytes; a pair holds codes), and a pair's
row is found from (merchant code, customer code) in a sorted index (key_index.py): no Python object per
pair, so a driver holds millions of pairs (docs/benchmarks.md has the bytes per pair). Per pair: n, the
exact amount sum (amounts.py), the greatest name, whether it counts towards F(m) / M(m), w (for
merchants past the volume bar), and whether PatId1 / PatId2 were reported. Per merchant: N, F, M as
counters, whether PatId3 was reported, and, once past the volume bar, its order statistics
(order_stats.py).

Rules after chunk k (SPEC section 4), each costing what chunk k touched:
- PatId2 for the pairs k touched (nothing else changed);
- PatId3 for the merchants k touched, from the counters;
- PatId1 for the merchants k touched that are past the bar: P90 of counts and P10 of weights from the
  order statistics, then the weight candidates checked against the P90. An untouched customer can match
  when the P90 drops, which is why candidates are all low-weight customers, not only touched ones.
A key already reported is skipped; a merchant not touched by k cannot produce a new match at k
(its state and the static weights are unchanged). Applying a batch chunk by chunk makes a backlog batch
detect exactly what one-by-one processing would, attributed to the same chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from txnwatch.core.config import Thresholds
from txnwatch.detect import amounts
from txnwatch.detect.key_index import Interner, KeyIndex, combined, pair_keys, to_arrow
from txnwatch.detect.order_stats import MerchantOrderStats
from txnwatch.detect.shapes import MEMBER, MERCHANT, PAIR
from txnwatch.detect.weights import Weights


@dataclass
class Match:
    chunk: int
    pattern_id: str
    customer_id: str
    merchant_id: str
    customer_name: str


@dataclass
class BatchChanges:
    """What a batch changed: the rows to write back, and the new detections in detection order."""
    pairs: pa.Table
    merchants: pa.Table
    members: pa.Table
    matches: list[Match] = field(default_factory=list)


def _bools(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return combined(pc.fill_null(col, False)).to_numpy(zero_copy_only=False).astype(bool, copy=False)


class _Columns:
    """Named numpy arrays of one length that grow by doubling."""

    def __init__(self, dtypes: dict[str, object]) -> None:
        self.size = 0
        self._dtypes = dtypes
        for name, dtype in dtypes.items():
            setattr(self, name, np.zeros(16, dtype=dtype))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self._dtypes)

    def extend(self, count: int) -> np.ndarray:
        """Room for `count` more rows (zeroed); their positions."""
        need = self.size + count
        capacity = len(getattr(self, next(iter(self._dtypes))))
        if need > capacity:
            capacity = max(need, 2 * capacity)
            for name, dtype in self._dtypes.items():
                grown = np.zeros(capacity, dtype=dtype)
                grown[:self.size] = getattr(self, name)[:self.size]
                setattr(self, name, grown)
        at = np.arange(self.size, need)
        self.size = need
        return at


class LiveState:
    """The running state and the incremental rules. `weights` is called (and may block) only when a
    merchant first passes the volume bar: the weights are loaded in the background meanwhile."""

    def __init__(self, th: Thresholds, weights: Callable[[], Weights]) -> None:
        self.th = th
        self._weights = weights
        self.customers, self.names = Interner(), Interner()
        self.pair_index = KeyIndex()
        # name: -1 until the pair's first row (any name is greater than none)
        self.pairs = _Columns({"merchant": np.int32, "customer": np.int32, "name": np.int32, "n": np.int64,
                               "s_lo": np.uint64, "s_hi": np.int64, "f": bool, "m": bool, "w": np.float64,
                               "upgrade": bool, "child": bool})
        self.merchant_of: dict[str, int] = {}
        self.merchants = _Columns({"id": object, "n": np.int64, "f": np.int64, "m": np.int64, "dei": bool})
        self.order_stats: dict[int, MerchantOrderStats] = {}

    # -- loading ------------------------------------------------------------------------------------

    def load(self, pairs: pa.Table, merchants: pa.Table, reported: list[tuple[str, str, str]]) -> None:
        """The state as Postgres holds it. pairs: shapes.STORED_PAIR; merchants: shapes.MERCHANT; reported:
        (pattern, customer, merchant)."""
        rows = self._merchant_codes(merchants["merchant_id"])
        for col, name in (("n", "txn_count"), ("f", "female_customers"), ("m", "male_customers")):
            getattr(self.merchants, col)[rows] = merchants[name].to_numpy()
        codes = self._merchant_codes(pairs["merchant_id"])
        customers = self.customers.codes(pairs["customer_id"])
        at = self._new_pairs(pair_keys(codes, customers), customers, codes)
        p = self.pairs
        p.n[at] = pairs["txn_count"].to_numpy()
        p.s_lo[at], p.s_hi[at] = amounts.lanes(pairs["amount_sum"])
        p.name[at] = self.names.codes(pairs["customer_name"])
        p.f[at] = _bools(pairs["has_f"])
        p.m[at] = _bools(pairs["has_m"])
        self._mark_reported(reported)
        # Merchants already past the volume bar get their order statistics from `prepare` (before the
        # first batch, once the weights are in) or when a chunk next touches them.

    def _mark_reported(self, reported: list[tuple[str, str, str]]) -> None:
        """Flag the keys already detected, the pairs' rows found in one lookup."""
        dei = [self.merchant_of[m] for pattern, _, m in reported if pattern == "PatId3"]
        self.merchants.dei[dei] = True
        keyed = [(pattern, c, m) for pattern, c, m in reported if pattern != "PatId3"]
        if not keyed:
            return
        customers = self.customers.find(pa.array([c for _, c, _ in keyed], pa.string()))
        rows = self.pair_index.find(pair_keys(np.array([self.merchant_of[m] for _, _, m in keyed]), customers))
        if (customers < 0).any() or (rows < 0).any():
            raise ValueError("a detected (customer, merchant) pair is missing from the stored state")
        upgrade = np.array([pattern == "PatId1" for pattern, _, _ in keyed])
        self.pairs.upgrade[rows[upgrade]] = True
        self.pairs.child[rows[~upgrade]] = True

    def prepare(self) -> None:
        """Order statistics for every merchant past the volume bar that has none (after a load), so a
        restart's first batch costs what any batch costs. Blocks until the weights are in."""
        p, bar = self.pairs, self.th.upgrade_min_merchant_txns + self.th.tolerance
        due = [m for m in np.flatnonzero(self.merchants.n[:self.merchants.size] > bar).tolist()
               if m not in self.order_stats]
        if not due:
            return
        order = np.argsort(p.merchant[:p.size], kind="stable")
        bounds = np.searchsorted(p.merchant[:p.size][order], np.arange(self.merchants.size + 1))
        for m in due:
            self._build_order_stats(m, order[bounds[m]:bounds[m + 1]])

    # -- one batch ----------------------------------------------------------------------------------

    def apply_batch(self, deltas: pa.Table) -> BatchChanges:
        """Apply the batch's per-(chunk, customer, merchant) deltas chunk by chunk, evaluating the rules
        after each chunk. Columns: chunk, customer_id, merchant_id, n, s, name, has_f, has_m."""
        deltas = deltas.sort_by("chunk")
        chunk_col = deltas["chunk"].to_numpy()
        bounds = np.flatnonzero(np.diff(chunk_col)) + 1
        touched_pairs, touched_merchants, members, matches = [], [], [], []
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(chunk_col)], strict=True):
            rows, merchants, new_members = self._apply_chunk(deltas.slice(start, stop - start))
            matches += self._evaluate(int(chunk_col[start]), rows, merchants)
            touched_pairs.append(rows)
            touched_merchants.append(merchants)
            members += new_members
        return BatchChanges(self._pairs_table(np.unique(np.concatenate(touched_pairs or [np.empty(0, np.int64)]))),
                            self._merchants_table(np.unique(np.concatenate(touched_merchants
                                                                           or [np.empty(0, np.int64)]))),
                            pa.concat_tables([*members, MEMBER.empty_table()]),
                            matches)

    def _apply_chunk(self, d: pa.Table) -> tuple[np.ndarray, np.ndarray, list[pa.Table]]:
        """Fold one chunk's deltas in: (pair rows touched, merchant rows touched, new gender members)."""
        p = self.pairs
        codes = self._merchant_codes(d["merchant_id"])
        customers = self.customers.codes(d["customer_id"])
        keys = pair_keys(codes, customers)
        rows = self.pair_index.find(keys)  # a chunk's deltas hold each pair once
        fresh = rows < 0
        if fresh.any():
            rows[fresh] = self._new_pairs(keys[fresh], customers[fresh], codes[fresh])
        dn = d["n"].to_numpy()
        old_n = p.n[rows].copy()
        p.n[rows] = old_n + dn
        amounts.add(p.s_lo, p.s_hi, rows, *amounts.lanes(d["s"]))
        self._keep_greatest_name(rows, self.names.codes(d["name"]))
        members = []
        for gender, flag in (("F", "f"), ("M", "m")):
            seen = _bools(d[f"has_{flag}"])
            first = seen & ~getattr(p, flag)[rows]
            getattr(p, flag)[rows[first]] = True
            np.add.at(getattr(self.merchants, flag), codes[first], 1)
            if first.any():
                mask = pa.array(first)
                members.append(pa.table({"merchant_id": d["merchant_id"].filter(mask),
                                         "gender": pa.array([gender] * int(first.sum()), pa.string()),
                                         "customer_id": d["customer_id"].filter(mask)}, schema=MEMBER))
        np.add.at(self.merchants.n, codes, dn)
        merchants = np.unique(codes)
        self._update_order_stats(rows, codes, old_n, fresh)
        return rows, merchants, members

    def _keep_greatest_name(self, rows: np.ndarray, names: np.ndarray) -> None:
        old = self.pairs.name[rows]
        greater = (old < 0) | (self.names.values(names) > self.names.values(np.maximum(old, 0)))
        self.pairs.name[rows] = np.where(greater, names, old)

    def _update_order_stats(self, rows: np.ndarray, codes: np.ndarray, old_n: np.ndarray,
                            fresh: np.ndarray) -> None:
        """Move the touched customers of merchants that have statistics; build them for merchants that
        passed the volume bar in this chunk."""
        p, bar = self.pairs, self.th.upgrade_min_merchant_txns + self.th.tolerance
        for m in np.unique(codes):
            m = int(m)
            stats = self.order_stats.get(m)
            if stats is None:
                if self.merchants.n[m] > bar:
                    self._build_order_stats(m)
                continue
            here = codes == m
            r = rows[here]
            stats.update_counts(old_n[here], p.n[r])
            joined = r[fresh[here]]
            if len(joined):
                p.w[joined] = self._weights().at(self.customers.values(p.customer[joined]), self.merchants.id[m])
                weighted = joined[~np.isnan(p.w[joined])]
                stats.add_weights(p.w[weighted], weighted)

    def _build_order_stats(self, m: int, rows: np.ndarray | None = None) -> None:
        """From the merchant's pair rows (found here when not given)."""
        p = self.pairs
        if rows is None:
            rows = np.flatnonzero(p.merchant[:p.size] == m)
        p.w[rows] = self._weights().at(self.customers.values(p.customer[rows]), self.merchants.id[m])
        weighted = rows[~np.isnan(p.w[rows])]
        self.order_stats[m] = MerchantOrderStats(p.n[rows], p.w[weighted], weighted)

    def _evaluate(self, chunk: int, rows: np.ndarray, merchants: np.ndarray) -> list[Match]:
        """New matches after `chunk`, given what it touched, in detection order
        (patternId, merchantId, customer id); reported keys are marked."""
        th, tol, p, ms = self.th, self.th.tolerance, self.pairs, self.merchants
        found: list[tuple[str, str, int]] = []  # (pattern, merchant id, pair row or -1)

        for m in merchants:
            stats = self.order_stats.get(int(m))
            if stats is None:
                continue
            p10 = stats.weight_percentile(th.upgrade_weight_percentile)
            if p10 is None:
                continue
            p90 = stats.count_percentile(th.upgrade_count_percentile)
            cand = stats.weight_candidates(p10 + tol)
            hits = cand[(p.n[cand] >= p90 - tol) & ~p.upgrade[cand]]
            p.upgrade[hits] = True
            found += [("PatId1", ms.id[m], int(r)) for r in hits]

        open_rows = rows[~p.child[rows]]
        mean = amounts.to_float(p.s_lo[open_rows], p.s_hi[open_rows]) / p.n[open_rows]
        hits = open_rows[(p.n[open_rows] >= th.child_min_txns - tol) & (mean < th.child_max_avg_amount - tol)]
        p.child[hits] = True
        found += [("PatId2", ms.id[p.merchant[r]], int(r)) for r in hits]

        f, male = ms.f[merchants], ms.m[merchants]
        hits = merchants[(f > th.dei_min_female_customers + tol) & (f < male - tol) & ~ms.dei[merchants]]
        ms.dei[hits] = True
        found += [("PatId3", ms.id[m], -1) for m in hits]

        def match(pattern: str, merchant: str, r: int) -> Match:
            if r < 0:
                return Match(chunk, pattern, "", merchant, "")
            return Match(chunk, pattern, self.customers.values(p.customer[r]).decode(), merchant,
                         self.names.values(p.name[r]).decode())

        return sorted((match(*x) for x in found), key=lambda d: (d.pattern_id, d.merchant_id, d.customer_id))

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _add_merchants(self, ids: list[str]) -> None:
        new = [m for m in dict.fromkeys(ids) if m not in self.merchant_of]
        if new:
            at = self.merchants.extend(len(new))
            self.merchants.id[at] = new
            self.merchant_of.update(zip(new, at.tolist(), strict=True))

    def _merchant_codes(self, ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Merchant rows for a column of merchant ids (new merchants are added)."""
        encoded = pc.dictionary_encode(combined(ids))
        distinct = encoded.dictionary.to_pylist()
        self._add_merchants(distinct)
        lookup = np.array([self.merchant_of[m] for m in distinct], dtype=np.int64)
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]

    def _new_pairs(self, keys: np.ndarray, customers: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Rows for pairs not seen before (all fields zero / false / NaN until set)."""
        at = self.pairs.extend(len(keys))
        self.pair_index.add(keys)  # numbers rows as the columns do
        p = self.pairs
        p.merchant[at] = codes
        p.customer[at] = customers
        p.name[at] = -1
        p.w[at] = np.nan
        return at

    @property
    def nbytes(self) -> int:
        """The state's own arrays (what grows with the pairs), for the log and the benchmark."""
        stats = sum(s.weights.nbytes + s.pairs.nbytes + s.hist.nbytes for s in self.order_stats.values())
        return self.pairs.nbytes + self.pair_index.nbytes + self.customers.nbytes + self.names.nbytes + stats

    def _pairs_table(self, rows: np.ndarray) -> pa.Table:
        p = self.pairs
        return pa.table([pa.array(self.merchants.id[p.merchant[rows]], pa.string()),
                         to_arrow(self.customers.values(p.customer[rows])), pa.array(p.n[rows]),
                         amounts.to_arrow(p.s_lo[rows], p.s_hi[rows]), to_arrow(self.names.values(p.name[rows]))],
                        schema=PAIR)

    def _merchants_table(self, rows: np.ndarray) -> pa.Table:
        ms = self.merchants
        return pa.table([pa.array(ms.id[rows], pa.string()), pa.array(ms.n[rows]), pa.array(ms.f[rows]),
                         pa.array(ms.m[rows])], schema=MERCHANT)

