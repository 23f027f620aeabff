"""An independent pandas evaluation of SPEC section 4's rules, chunk by chunk, for checking generated data.

Deliberately written from the SPEC text alone (not from the detection job) so it can vouch for the
generator: after each chunk of R rows, the rules are evaluated on the running totals and every match
never seen before counts as a detection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TOL = 1e-9
DEFAULTS = {"upgrade_min_merchant_txns": 50_000, "upgrade_count_percentile": 0.9,
            "upgrade_weight_percentile": 0.1, "child_min_txns": 80, "child_max_avg_amount": 23.0,
            "dei_min_female_customers": 100}


def load_transactions(path: Path) -> pd.DataFrame:
    header = Path(path).open().readline()
    if header.startswith("step,"):
        df = pd.read_csv(path, quotechar="'", dtype={"customer": str, "merchant": str, "gender": str})
        return df.rename(columns={"customer": "c", "merchant": "m"})[["c", "m", "amount", "gender"]]
    df = pd.read_csv(path, dtype={"customerId": str, "merchantId": str, "gender": str})
    return df.rename(columns={"customerId": "c", "merchantId": "m"})[["c", "m", "amount", "gender"]]


def load_weights(path: Path) -> pd.Series:
    """w(c,m): the mean over the customer's transaction types of the mean weight per type."""
    header = Path(path).open().readline()
    if header.startswith("Source,"):
        df = pd.read_csv(path, quotechar="'", dtype=str).rename(
            columns={"Source": "c", "Target": "m", "typeTrans": "t", "Weight": "w"})
    else:
        df = pd.read_csv(path, dtype=str).rename(
            columns={"customerId": "c", "merchantId": "m", "transactionType": "t", "weight": "w"})
    df["w"] = df["w"].astype(float)
    return df.groupby(["m", "c", "t"])["w"].mean().groupby(["m", "c"]).mean()


def detections(transactions: Path, importance: Path, rows_per_chunk: int = 10_000,
               **overrides) -> dict[str, set[tuple[str, str]]]:
    t = {**DEFAULTS, **overrides}
    tx = load_transactions(transactions)
    weights = load_weights(importance)
    empty = pd.MultiIndex.from_arrays([[], []], names=["m", "c"])
    n = pd.Series(dtype=float, index=empty)
    s = pd.Series(dtype=float, index=empty)
    seen_pairs = pd.DataFrame(columns=["m", "c", "gender"])
    found: dict[str, set[tuple[str, str]]] = {"PatId1": set(), "PatId2": set(), "PatId3": set()}
    for start in range(0, len(tx), rows_per_chunk):
        part = tx.iloc[start:start + rows_per_chunk]
        g = part.groupby(["m", "c"])["amount"].agg(["size", "sum"])
        n = n.add(g["size"], fill_value=0)
        s = s.add(g["sum"], fill_value=0)
        seen_pairs = pd.concat([seen_pairs, part[["m", "c", "gender"]]]).drop_duplicates(["m", "c"])

        child = n[(n >= t["child_min_txns"]) & (s / n < t["child_max_avg_amount"])]
        found["PatId2"].update(child.index)

        counts = seen_pairs.groupby(["m", "gender"]).size().unstack(fill_value=0)
        f = counts.get("F", pd.Series(0, index=counts.index))
        m = counts.get("M", pd.Series(0, index=counts.index))
        dei = counts.index[(f > t["dei_min_female_customers"]) & (f < m)]
        found["PatId3"].update((mid, "") for mid in dei)

        big = n.groupby(level="m").sum()
        for mid in big.index[big > t["upgrade_min_merchant_txns"]]:
            nm = n.xs(mid, level="m")
            p90 = np.percentile(nm.to_numpy(), t["upgrade_count_percentile"] * 100)
            wm = weights.xs(mid, level="m").reindex(nm.index).dropna() if mid in weights.index.levels[0] \
                else pd.Series(dtype=float)
            if wm.empty:
                continue
            p10 = np.percentile(wm.to_numpy(), t["upgrade_weight_percentile"] * 100)
            hit = wm.index[(nm.reindex(wm.index) >= p90 - TOL) & (wm <= p10 + TOL)]
            found["PatId1"].update((c, mid) for c in hit)
    return found
