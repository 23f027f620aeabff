"""The three rules (SPEC section 4) as Spark code, evaluated as of the end of each chunk of a batch.

The input is the state as of each chunk k of the batch, for the merchants k touches (asof.py): one
row per (chunk, customer, merchant) and one per (chunk, merchant). Evaluating as of each chunk makes a
backlog batch detect exactly what chunk-by-chunk processing would, attributed to the same chunks.

Only merchants touched by chunk k are evaluated at k: the rules for merchant m depend only on m's
state (and the static weights), so an untouched merchant's matches are the ones already reported.
Likewise PatId2 is evaluated only for (customer, merchant) pairs touched at k.

Comparisons use the absolute tolerance: `a >= b` passes when a >= b - tol; a strict `a < b` needs
a < b - tol (so an average of exactly 23 is not below 23). Percentiles are Spark's `percentile`
(linear interpolation), per (chunk, merchant); it skips nulls, so P10 ranges over the customers of m
that have a weight.

The plan is one Spark job with a single shuffle (the percentile window per chunk and merchant).
"""

from __future__ import annotations

import functools

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from txnwatch.config import Thresholds

PATTERNS = {"PatId1": "UPGRADE", "PatId2": "CHILD", "PatId3": "DEI-NEEDED"}
MATCH_COLUMNS = ["chunk", "pattern_id", "customer_id", "merchant_id", "customer_name"]


@functools.cache
def _rule_columns(th: Thresholds) -> dict[str, list[Column]]:
    """The rules' Column expressions, built once per run: each F.* call is a JVM round trip, and
    rebuilding them for every batch costs a visible part of the 1 s lag budget."""
    tol = th.tolerance
    per_merchant = Window.partitionBy("chunk", "merchant_id")
    match = lambda pattern, customer, name: [  # noqa: E731
        F.col("chunk"), F.lit(pattern).alias("pattern_id"), customer.alias("customer_id"), F.col("merchant_id"),
        name.alias("customer_name")]
    return {
        # PatId1: N(m) > 50,000, n(c,m) >= P90 of n over m's customers, c has a weight <= P10 of weights.
        "upgrade_volume": [F.col("total") > th.upgrade_min_merchant_txns + tol],
        "upgrade_cuts": [F.col("*"),
                         F.percentile("n", th.upgrade_count_percentile).over(per_merchant).alias("p_n"),
                         F.percentile("w", th.upgrade_weight_percentile).over(per_merchant).alias("p_w")],
        "upgrade_match": [(F.col("n") >= F.col("p_n") - tol) & F.col("w").isNotNull()
                          & (F.col("w") <= F.col("p_w") + tol)],
        "upgrade_out": match("PatId1", F.col("customer_id"), F.col("name")),
        # PatId2: n(c,m) >= 80 and mean amount < 23 (exact decimal sum, mean as double).
        "child_match": [F.col("touched") & (F.col("n") >= th.child_min_txns - tol)
                        & (F.col("s").cast("double") / F.col("n") < th.child_max_avg_amount - tol)],
        "child_out": match("PatId2", F.col("customer_id"), F.col("name")),
        # PatId3: F(m) > 100 and F(m) < M(m); one per merchant, customer "" and name "".
        "dei_match": [(F.col("f") > th.dei_min_female_customers + tol) & (F.col("f") < F.col("m") - tol)],
        "dei_out": match("PatId3", F.lit(""), F.lit("")),
    }


def evaluate(customers: DataFrame, merchants: DataFrame, th: Thresholds) -> DataFrame:
    """Every match of the batch (a key may match at several chunks): columns MATCH_COLUMNS.

    customers: (chunk, customer_id, merchant_id, n, s, name, w, touched, total) as of the chunk.
    merchants: (chunk, merchant_id, total, f, m) as of the chunk.
    """
    c = _rule_columns(th)
    upgrade = (customers.filter(*c["upgrade_volume"]).select(*c["upgrade_cuts"])
               .filter(*c["upgrade_match"]).select(*c["upgrade_out"]))
    child = customers.filter(*c["child_match"]).select(*c["child_out"])
    dei = merchants.filter(*c["dei_match"]).select(*c["dei_out"])
    return upgrade.unionByName(child).unionByName(dei)
