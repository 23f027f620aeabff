"""Customer weights w(c, m) from the importance file (SPEC section 2), once per run.

w(c, m) is the mean, over the customer's transaction types, of the mean weight per type. Rows with a
merchantId count only for that merchant; rows with an empty merchantId count for every merchant (the
file may mix both: then w(c, m) uses c's rows for m together with c's merchant-less rows). A customer
with no applicable row has no weight. Rows whose weight is not a number are ignored.

Spark reads the file and reduces it to per (customer, merchant, type) sums and counts (one
aggregation); the driver, which attaches w to the state rows it hands the rules, combines those keys
into w(c, m) and, for merchant-less rows, w(c), with Arrow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


class Weights:
    """w(c, m): the specific weight, else the one from merchant-less rows, else none. Specific weights
    are kept per merchant ({merchant: {customer: w}}): `at` serves one merchant at a time."""

    def __init__(self, by_merchant: dict[str, dict[str, float]], generic: dict[str, float]) -> None:
        self.by_merchant, self.generic = by_merchant, generic

    @classmethod
    def from_pairs(cls, specific: dict[tuple[str, str], float], generic: dict[str, float]) -> Weights:
        by_merchant: dict[str, dict[str, float]] = {}
        for (c, m), w in specific.items():
            by_merchant.setdefault(m, {})[c] = w
        return cls(by_merchant, generic)

    @property
    def specific(self) -> dict[tuple[str, str], float]:
        """Every specific weight keyed by (customer, merchant) (for inspection and tests)."""
        return {(c, m): w for m, ws in self.by_merchant.items() for c, w in ws.items()}

    def __len__(self) -> int:
        return sum(len(ws) for ws in self.by_merchant.values())

    def at(self, customers: list[str], merchant: str) -> np.ndarray:
        """w(c, merchant) for each customer, NaN where c has none. Called for the customers a merchant
        gains once it is past the volume bar (and once for all of them when it gets there)."""
        specific, generic = self.by_merchant.get(merchant, {}), self.generic
        return np.array([specific.get(c, generic.get(c)) for c in customers], dtype=np.float64)  # None -> NaN


def compute_weights(importance: DataFrame) -> DataFrame:
    """Per (customer, merchant or "", type): the sum and count of valid weights (one aggregation)."""
    return (importance
            .select(F.col("customerId").alias("customer_id"),
                    F.coalesce(F.col("merchantId"), F.lit("")).alias("merchant_id"),
                    F.coalesce(F.col("transactionType"), F.lit("")).alias("t"),
                    F.col("weight").try_cast("double").alias("weight"))
            .filter(F.col("weight").isNotNull() & ~F.isnan("weight")
                    & F.col("customer_id").isNotNull() & (F.col("customer_id") != ""))
            .groupBy("customer_id", "merchant_id", "t")
            .agg(F.sum("weight").alias("total"), F.count(F.lit(1)).alias("rows")))


def collect_weights(sums: DataFrame) -> Weights:
    """w(c, m) on the driver from the per-type sums, collected once as Arrow."""
    return weights_from_sums(sums.toArrow())


def weights_from_sums(sums: pa.Table) -> Weights:
    """The mean over types of the mean per type, a type's rows being c's rows for m plus c's merchant-less
    rows. With Arrow joins and group-bys, not a Python loop per key: at 10× customers there are ≈700k keys,
    and a loop held the interpreter for seconds while the first chunks waited.

    Per (c, m) the types are c's merchant-less types (each contributes its mean g, or (s+g)/(ns+ng) when
    (c, m) has it too) plus the types only (c, m) has (s/ns): the customer's sum of g is computed once and
    each specific row adds its correction, so no (pair x merchant-less type) product is ever built."""
    sums = sums.select(["customer_id", "merchant_id", "t", "total", "rows"])
    total, rows = pc.cast(sums["total"], pa.float64()), pc.cast(sums["rows"], pa.float64())
    sums = pa.table({"customer_id": sums["customer_id"], "merchant_id": sums["merchant_id"], "t": sums["t"],
                     "total": total, "rows": rows})
    generic_rows = pc.equal(sums["merchant_id"], "")
    gen = sums.filter(generic_rows)
    gen = pa.table({"customer_id": gen["customer_id"], "t": gen["t"], "g_total": gen["total"],
                    "g_rows": gen["rows"], "g_mean": pc.divide(gen["total"], gen["rows"])})
    per_customer = gen.group_by("customer_id").aggregate([("g_mean", "sum"), ("g_mean", "count")])
    generic = per_customer.select(["customer_id"]).append_column(
        "w", pc.divide(per_customer["g_mean_sum"], pc.cast(per_customer["g_mean_count"], pa.float64())))

    spec = sums.filter(pc.invert(generic_rows)).join(gen, keys=["customer_id", "t"], join_type="left outer")
    shared = pc.is_valid(spec["g_rows"])
    contrib = pc.if_else(shared, pc.subtract(pc.divide(pc.add(spec["total"], spec["g_total"]),
                                                       pc.add(spec["rows"], spec["g_rows"])), spec["g_mean"]),
                         pc.divide(spec["total"], spec["rows"]))
    per_pair = pa.table({"customer_id": spec["customer_id"], "merchant_id": spec["merchant_id"], "c": contrib,
                         "n": pc.cast(pc.invert(shared), pa.int64())}) \
        .group_by(["customer_id", "merchant_id"]).aggregate([("c", "sum"), ("n", "sum")]) \
        .join(per_customer, keys="customer_id", join_type="left outer")
    w = pc.divide(pc.add(pc.coalesce(per_pair["g_mean_sum"], 0.0), per_pair["c_sum"]),
                  pc.cast(pc.add(pc.coalesce(per_pair["g_mean_count"], 0), per_pair["n_sum"]),
                          pa.float64()))
    specific = per_pair.select(["customer_id", "merchant_id"]).append_column("w", w)
    specific = specific.sort_by("merchant_id")
    merchants = specific["merchant_id"].to_numpy(zero_copy_only=False)
    starts = list(np.flatnonzero(np.r_[True, merchants[1:] != merchants[:-1]])) if len(merchants) else []
    by_merchant = {}
    for start, end in zip(starts, [*starts[1:], len(merchants)][:len(starts)], strict=True):
        part = specific.slice(start, end - start)
        by_merchant[merchants[start]] = dict(zip(part["customer_id"].to_pylist(), part["w"].to_pylist(),
                                                 strict=True))
    return Weights(by_merchant, dict(zip(generic["customer_id"].to_pylist(), generic["w"].to_pylist(), strict=True)))
