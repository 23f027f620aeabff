"""An independent reference implementation of SPEC section 4, for comparing against the Spark job.

Plain Python + numpy, no code shared with txnwatch.detect: it reads the landed chunks one by one with
the csv module, keeps the state in dicts, and after every chunk evaluates every rule for every
merchant, reporting each (pattern, customer, merchant) the first time it matches.

Conventions it shares with the job because the SPEC leaves them open (docs/rules-and-decisions.md documents them):
- a row is rejected for a wrong field count, an empty customerId or merchantId, or a non-numeric
  amount; a chunk with a wrong header is skipped;
- the customer's name at a merchant is the greatest non-empty customerName of its rows there (the id
  when all are empty);
- F(m)/M(m) count distinct customers with at least one F/M transaction at m;
- w(c, m): mean over types of the mean weight per type, over c's rows for m plus c's rows without a
  merchantId.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

COLUMNS = ["transactionId", "customerId", "customerName", "merchantId", "amount", "transactionType",
           "gender", "timestamp"]
ACTIONS = {"PatId1": "UPGRADE", "PatId2": "CHILD", "PatId3": "DEI-NEEDED"}


@dataclass(frozen=True)
class Det:
    chunk: int
    pattern_id: str
    customer_id: str
    merchant_id: str
    customer_name: str

    @property
    def action(self) -> str:
        return ACTIONS[self.pattern_id]


def _amount(text: str | None) -> Decimal | None:
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return d if d.is_finite() else None


def weights_from_csv(data: bytes | None) -> tuple[dict, dict]:
    """(specific, generic): specific[(c, m)] and generic[c] = the weight w as SPEC section 2 defines."""
    if data is None:
        return {}, {}
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    by_pair: dict = defaultdict(lambda: defaultdict(list))
    by_cust: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        try:
            w = float(r["weight"])
        except (TypeError, ValueError):
            continue
        if math.isnan(w) or not r["customerId"]:
            continue
        m = r.get("merchantId") or ""
        (by_pair[(r["customerId"], m)] if m else by_cust[r["customerId"]])[r.get("transactionType") or ""].append(w)

    def mean_of_means(types: dict) -> float:
        per_type = [sum(v) / len(v) for v in types.values()]
        return sum(per_type) / len(per_type)

    specific = {}
    for (c, m), types in by_pair.items():
        merged = defaultdict(list)
        for t, v in types.items():
            merged[t].extend(v)
        for t, v in by_cust.get(c, {}).items():
            merged[t].extend(v)
        specific[(c, m)] = mean_of_means(merged)
    generic = {c: mean_of_means(types) for c, types in by_cust.items()}
    return specific, generic


def detect(chunks: list[bytes | None], importance: bytes | None, th) -> list[Det]:
    """Detections in order, for chunk contents in chunk order (None = unreadable chunk)."""
    tol = th.tolerance
    specific, generic = weights_from_csv(importance)

    def weight(c: str, m: str) -> float | None:
        return specific.get((c, m), generic.get(c))

    n: dict = defaultdict(int)
    s: dict = defaultdict(Decimal)
    name: dict = {}
    total: dict = defaultdict(int)
    gender_customers: dict = defaultdict(set)  # (m, g) -> customers
    customers_of: dict = defaultdict(set)
    reported: set = set()
    out: list[Det] = []
    for k, data in enumerate(chunks, start=1):
        if data is None:
            continue
        try:
            text = data.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError:
            continue
        reader = csv.reader(io.StringIO(text, newline=""))
        if next(reader, None) != COLUMNS:
            continue
        for rec in reader:
            if not rec:
                continue
            if len(rec) != len(COLUMNS):
                continue
            r = dict(zip(COLUMNS, rec, strict=True))
            c, m, a = r["customerId"], r["merchantId"], _amount(r["amount"])
            if not c.strip() or not m.strip() or a is None:
                continue
            n[(c, m)] += 1
            s[(c, m)] += a
            nm = r["customerName"] if r["customerName"].strip() else c
            name[(c, m)] = max(name.get((c, m), nm), nm)
            total[m] += 1
            customers_of[m].add(c)
            if r["gender"] in ("F", "M"):
                gender_customers[(m, r["gender"])].add(c)
        found: list[Det] = []
        for m in sorted(customers_of):
            custs = sorted(customers_of[m])
            if total[m] > th.upgrade_min_merchant_txns + tol:
                p_n = float(np.quantile(np.array([n[(c, m)] for c in custs], dtype=float),
                                        th.upgrade_count_percentile))
                ws = [weight(c, m) for c in custs]
                known = [w for w in ws if w is not None]
                if known:
                    p_w = float(np.quantile(np.array(known), th.upgrade_weight_percentile))
                    for c, w in zip(custs, ws, strict=True):
                        if w is not None and n[(c, m)] >= p_n - tol and w <= p_w + tol:
                            found.append(Det(k, "PatId1", c, m, name[(c, m)]))
            for c in custs:
                if n[(c, m)] >= th.child_min_txns - tol and \
                        float(s[(c, m)]) / n[(c, m)] < th.child_max_avg_amount - tol:
                    found.append(Det(k, "PatId2", c, m, name[(c, m)]))
            f, mm = len(gender_customers[(m, "F")]), len(gender_customers[(m, "M")])
            if f > th.dei_min_female_customers + tol and f < mm - tol:
                found.append(Det(k, "PatId3", "", m, ""))
        for d in sorted(found, key=lambda d: (d.pattern_id, d.merchant_id, d.customer_id)):
            key = (d.pattern_id, d.customer_id, d.merchant_id)
            if key not in reported:
                reported.add(key)
                out.append(d)
    return out


def detect_store(store, importance_key: str, th) -> list[Det]:
    """The reference over a landing store (anything with exists/get), chunks 1, 2, ... while present."""
    chunks = []
    k = 1
    while store.exists(f"chunk_{k:08d}/transactions.csv"):
        try:
            chunks.append(store.get(f"chunk_{k:08d}/transactions.csv"))
        except Exception:  # noqa: BLE001
            chunks.append(None)
        k += 1
    imp = store.get(importance_key) if store.exists(importance_key) else None
    return detect(chunks, imp, th)
