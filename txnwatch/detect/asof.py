"""The running state as of the end of each chunk of a batch, laid out for the rules.

Given the batch's per-chunk deltas (collected from Spark) and the prior state read from Postgres, this
replays the chunks in order on the driver and emits, for every chunk k and every merchant m that k
touches, the rows the rules need as of k:

- one `customers` row per (k, c, m), with N(m), for every customer of m when m may pass PatId1's volume bar in
  this batch (all its customers are needed for the percentiles), else for the pairs k touched;
- one `merchants` row per (k, m) with N(m), F(m), M(m).

No rule is decided here (Spark does that, see rules.py); this is bookkeeping over a few thousand rows
per chunk, and doing it in plain Python keeps each batch to two short Spark jobs: on this 2-core
machine every extra shuffle stage costs ~0.1-0.3 s, which the 1 s lag budget cannot afford.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa

CUSTOMER_ARROW = pa.schema([
    ("chunk", pa.int32()), ("customer_id", pa.string()), ("merchant_id", pa.string()), ("n", pa.int64()),
    ("s", pa.decimal128(38, 10)), ("name", pa.string()), ("w", pa.float64()), ("touched", pa.bool_()),
    ("total", pa.int64()),
])
MERCHANT_ARROW = pa.schema([
    ("chunk", pa.int32()), ("merchant_id", pa.string()), ("total", pa.int64()), ("f", pa.int64()),
    ("m", pa.int64()),
])


@dataclass
class Prior:
    """State before the batch, from Postgres (see state.read_prior)."""
    stats: list[tuple[str, str, int, Decimal, str]]  # customer, merchant, n, s, name
    merchants: list[tuple[str, int, int, int]]  # merchant, N, F, M
    gender: list[tuple[str, str, str]]  # merchant, gender, customer already counted
    full_merchants: set[str]  # merchants whose complete customer list is in `stats`


class Weights:
    """w(c, m): the specific weight, else the one from merchant-less rows, else None."""

    def __init__(self, specific: dict[tuple[str, str], float], generic: dict[str, float]) -> None:
        self.specific, self.generic = specific, generic

    def get(self, c: str, m: str) -> float | None:
        w = self.specific.get((c, m))
        return self.generic.get(c) if w is None else w


def replay(deltas: pa.Table, prior: Prior, weights: Weights | None) -> tuple[pa.Table, pa.Table]:
    """(customers, merchants) as of each chunk of the batch, in CUSTOMER_ARROW / MERCHANT_ARROW.

    `weights` may be None when no merchant of the batch can pass the volume bar: w is then unused.
    """
    pair: dict[tuple[str, str], list] = {(c, m): [n, s, name] for c, m, n, s, name in prior.stats}
    merchant = {m: [total, f, mm] for m, total, f, mm in prior.merchants}
    counted = set(prior.gender)
    customers_of: dict[str, set[str]] = defaultdict(set)
    for c, m, *_ in prior.stats:
        if m in prior.full_merchants:
            customers_of[m].add(c)

    d = deltas.to_pydict()
    by_chunk: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(d["chunk"]):
        by_chunk[k].append(i)

    cols: dict[str, list] = {f.name: [] for f in CUSTOMER_ARROW}
    mcols: dict[str, list] = {f.name: [] for f in MERCHANT_ARROW}

    def emit(k: int, c: str, m: str, touched: bool, total: int) -> None:
        n, s, name = pair[(c, m)]
        cols["total"].append(total)
        cols["chunk"].append(k)
        cols["customer_id"].append(c)
        cols["merchant_id"].append(m)
        cols["n"].append(n)
        cols["s"].append(s)
        cols["name"].append(name)
        cols["w"].append(weights.get(c, m) if weights is not None else None)
        cols["touched"].append(touched)

    for k in sorted(by_chunk):
        touched_pairs: dict[str, list[str]] = defaultdict(list)
        for i in by_chunk[k]:
            c, m = d["customer_id"][i], d["merchant_id"][i]
            st = pair.get((c, m))
            if st is None:
                pair[(c, m)] = [d["n"][i], d["s"][i], d["name"][i]]
            else:
                st[0] += d["n"][i]
                st[1] += d["s"][i]
                st[2] = max(st[2], d["name"][i])
            ms = merchant.setdefault(m, [0, 0, 0])
            ms[0] += d["n"][i]
            for flag, g, slot in (("has_f", "F", 1), ("has_m", "M", 2)):
                if d[flag][i] and (m, g, c) not in counted:
                    counted.add((m, g, c))
                    ms[slot] += 1
            touched_pairs[m].append(c)
            if m in prior.full_merchants:
                customers_of[m].add(c)
        for m in sorted(touched_pairs):
            total, f, mm = merchant[m]
            mcols["chunk"].append(k)
            mcols["merchant_id"].append(m)
            mcols["total"].append(total)
            mcols["f"].append(f)
            mcols["m"].append(mm)
            if m in prior.full_merchants:
                touched = set(touched_pairs[m])
                for c in customers_of[m]:
                    emit(k, c, m, c in touched, total)
            else:
                for c in touched_pairs[m]:
                    emit(k, c, m, True, total)
    return (pa.table(cols, schema=CUSTOMER_ARROW), pa.table(mcols, schema=MERCHANT_ARROW))
