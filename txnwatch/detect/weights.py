"""Customer weights w(c, m) from the importance file (SPEC section 2), once per run.

w(c, m) is the mean, over the customer's transaction types, of the mean weight per type. Rows with a
merchantId count only for that merchant; rows with an empty merchantId count for every merchant (the
file may mix both: then w(c, m) uses c's rows for m together with c's merchant-less rows). A customer
with no applicable row has no weight. Rows whose weight is not a number are ignored.

Spark reads the file and reduces it to per (customer, merchant, type) sums and counts (one
aggregation); the driver, which attaches w to the state rows it hands the rules, combines those few
thousand keys into w(c, m) and, for merchant-less rows, w(c).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


class Weights:
    """w(c, m): the specific weight, else the one from merchant-less rows, else none."""

    def __init__(self, specific: dict[tuple[str, str], float], generic: dict[str, float]) -> None:
        self.specific, self.generic = specific, generic

    def get(self, c: str, m: str) -> float | None:
        w = self.specific.get((c, m))
        return self.generic.get(c) if w is None else w

    def at(self, customers: list[str], merchant: str) -> np.ndarray:
        """w(c, merchant) for each customer, NaN where c has none. Called for the customers a merchant
        gains once it is past the volume bar (and once for all of them when it gets there)."""
        return np.array([self.get(c, merchant) for c in customers], dtype=np.float64)  # None -> NaN


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
    """w(c, m) on the driver from the per-type sums (a few thousand keys), where the per-chunk state is
    laid out: the mean over types of the mean per type, a type's rows being c's rows for m plus c's
    merchant-less rows."""
    specific_types: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(dict)
    generic_types: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for c, m, t, total, rows in zip(*sums.toArrow().to_pydict().values(), strict=True):
        (specific_types[(c, m)] if m else generic_types[c])[t] = [total, rows]

    def mean_of_means(types: dict[str, list[float]]) -> float:
        return sum(total / rows for total, rows in types.values()) / len(types)

    specific = {}
    for (c, m), types in specific_types.items():
        merged = {t: list(v) for t, v in types.items()}
        for t, (total, rows) in generic_types.get(c, {}).items():
            acc = merged.setdefault(t, [0.0, 0])
            acc[0] += total
            acc[1] += rows
        specific[(c, m)] = mean_of_means(merged)
    generic = {c: mean_of_means(types) for c, types in generic_types.items()}
    return Weights(specific, generic)
