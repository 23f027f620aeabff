"""Seeded builders of landing zones for the detection tests: canonical chunks written straight into a
store (as Mechanism X would) plus the importance reference, shaped so that with the thresholds of
`LOW` all three rules fire many times, at different chunks."""

from __future__ import annotations

import csv
import io
import json
import random

from txnwatch.core.config import Thresholds
from txnwatch.core.landing import CANONICAL_COLUMNS, END_KEY, IMPORTANCE_COLUMNS, REFERENCE_KEY, chunk_key

# Lowered thresholds for small data sets: merchants cross the volume bar mid-stream.
LOW = Thresholds(upgrade_min_merchant_txns=300, upgrade_weight_percentile=0.3, child_min_txns=8,
                 dei_min_female_customers=15)


def csv_bytes(header, rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def build_rows(n_rows: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """(transactions, importance rows) of a small BankSim-like world."""
    rnd = random.Random(seed)
    merchants = [f"M{i:03d}" for i in range(8)]
    mweights = [30, 20, 12, 10, 8, 8, 6, 6]
    customers = [f"C{i:04d}" for i in range(160)]
    genders = {c: rnd.choices("FMEU", [40, 50, 5, 5])[0] for c in customers}
    # Merchant M002 attracts mostly men (DEI), M003 mostly women.
    kids = set(rnd.sample(customers, 25))  # small spenders: CHILD candidates
    heavy = set(rnd.sample(customers, 20))  # frequent customers: UPGRADE candidates
    names = {c: f"Name {c}" for c in customers}
    types = ["es_transportation", "es_food", "es_health", "es_fashion"]
    rows = []
    for i in range(n_rows):
        m = rnd.choices(merchants, mweights)[0]
        pool = customers
        if m == "M002":
            pool = [c for c in customers if genders[c] != "F"] if rnd.random() < 0.6 else customers
        elif m == "M003":
            pool = [c for c in customers if genders[c] == "F"] if rnd.random() < 0.6 else customers
        if rnd.random() < 0.3:
            pool = sorted(heavy)
        c = rnd.choice(pool)
        amount = rnd.uniform(1, 30) if c in kids else rnd.uniform(5, 120)
        # Some names vary between rows: the greatest one is the customer's name.
        nm = names[c] if rnd.random() < 0.9 else (f"{names[c]} Jr" if rnd.random() < 0.5 else "")
        rows.append([str(i), c, nm, m, f"{amount:.2f}", rnd.choice(types), genders[c], str(i // 100)])
    imp = []
    for c in customers:
        r = rnd.random()
        if r < 0.1:
            continue  # no weight at all
        if r < 0.2:
            for t in rnd.sample(types, 2):  # merchant-less rows: apply to every merchant
                imp.append([c, "", t, f"{rnd.choice([0.5, 1, 1.5, 2, 3]):.2f}"])
            continue
        for m in rnd.sample(merchants, 4):
            for t in rnd.sample(types, rnd.randint(1, 3)):
                for _ in range(rnd.randint(1, 2)):
                    # A coarse grid of weights makes ties at the 10th percentile likely.
                    imp.append([c, m, t, f"{rnd.choice([0.5, 1, 1.5, 2, 3, 4]):.2f}"])
    return rows, imp


def land(store, rows: list[list[str]], imp: list[list[str]] | None, rows_per_chunk: int,
         end: bool = True, start: int = 1) -> int:
    """Write the rows as chunks start, start+1, ... (and the reference and _END.json); chunks written."""
    if imp is not None:
        store.put(REFERENCE_KEY, csv_bytes(IMPORTANCE_COLUMNS, imp))
    k = start - 1
    for k, i in enumerate(range(0, len(rows), rows_per_chunk), start=start):
        store.put(chunk_key(k), csv_bytes(CANONICAL_COLUMNS, rows[i:i + rows_per_chunk]))
    if end:
        store.put(END_KEY, json.dumps({"chunks": k, "rows": len(rows), "rejected": 0}).encode())
    return k - start + 1


def read_output(store) -> list[list[dict]]:
    """The detection files, in order, as lists of records."""
    files = [k for k in store.list("detections_")]
    return [[json.loads(line) for line in store.get(k).decode().splitlines()] for k in files]


def flat(files: list[list[dict]]) -> list[tuple[str, str, str, str]]:
    return [(d["patternId"], d["ActionType"], d["customerName"], d["merchantId"]) for f in files for d in f]


def assert_matches_reference(out_store, ref) -> None:
    """The job's files hold exactly the reference detections, in order, 50 per file (last one shorter)."""
    files = read_output(out_store)
    expected = [(d.pattern_id, d.action, d.customer_name, d.merchant_id) for d in ref]
    assert flat(files) == expected
    sizes = [len(f) for f in files]
    assert sizes == [50] * (len(expected) // 50) + ([len(expected) % 50] if len(expected) % 50 else [])
    assert out_store.list("detections_") == [f"detections_{n:08d}.jsonl" for n in range(1, len(files) + 1)]


def check_exactly_once(db_url: str, schema: str, expected: int, chunks: int | None = None) -> None:
    """Postgres holds each detection once (seq without a gap) and one metrics row per chunk (all
    `chunks` of them, when given)."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        n, keys, max_seq = conn.execute(
            f"SELECT count(*), count(DISTINCT (pattern_id, customer_id, merchant_id)), coalesce(max(seq), 0) "
            f"FROM {schema}.detected_patterns").fetchone()
        rows, distinct = conn.execute(
            f"SELECT count(*), count(DISTINCT chunk) FROM {schema}.y_chunk_metrics").fetchone()
    assert n == keys == max_seq == expected
    assert rows == distinct and (chunks is None or rows == chunks)
