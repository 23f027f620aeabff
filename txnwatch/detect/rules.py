"""The three rules (SPEC section 4) as Spark code, evaluated as of the end of each chunk of a batch.

Inputs are small DataFrames the job builds from the collected chunk deltas and from the prior state it
read from Postgres; the output is every match, reduced to the earliest chunk per (pattern, customer,
merchant). Evaluating "as of chunk k" for each chunk of a multi-chunk batch makes a backlog batch
detect exactly what chunk-by-chunk processing would, attributed to the same chunks.

Only merchants touched by chunk k are evaluated at k: the rules for merchant m depend only on m's
state (and the static weights), so an untouched merchant's matches are the ones already reported.
Likewise PatId2 is evaluated only for (customer, merchant) pairs touched at k.

Comparisons use the absolute tolerance: `a >= b` passes when a >= b - tol; a strict `a < b` needs
a < b - tol (so an average of exactly 23 is not below 23).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from txnwatch.config import Thresholds
from txnwatch.detect.weights import attach_weight

PATTERNS = {"PatId1": "UPGRADE", "PatId2": "CHILD", "PatId3": "DEI-NEEDED"}

# Prior state handed over from Postgres.
PRIOR_STATS_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType(), False),
    T.StructField("merchant_id", T.StringType(), False),
    T.StructField("n0", T.LongType(), False),
    T.StructField("s0", T.DecimalType(38, 10), False),
    T.StructField("name0", T.StringType(), False),
])
PRIOR_MERCHANT_SCHEMA = T.StructType([
    T.StructField("merchant_id", T.StringType(), False),
    T.StructField("total0", T.LongType(), False),
    T.StructField("f0", T.LongType(), False),
    T.StructField("m0", T.LongType(), False),
])
PRIOR_GENDER_SCHEMA = T.StructType([
    T.StructField("merchant_id", T.StringType(), False),
    T.StructField("gender", T.StringType(), False),
    T.StructField("customer_id", T.StringType(), False),
])
MATCH_COLUMNS = ["chunk", "pattern_id", "customer_id", "merchant_id", "customer_name"]


def evaluate(deltas: DataFrame, prior_stats: DataFrame, prior_merchants: DataFrame, prior_gender: DataFrame,
             weights: DataFrame, th: Thresholds) -> DataFrame:
    """All matches of the batch, earliest chunk per key: columns MATCH_COLUMNS.

    deltas: (chunk, customer_id, merchant_id, n, s, name, has_f, has_m), one row per pair and chunk.
    prior_stats: (customer_id, merchant_id, n0, s0, name0) for every pair touched by the batch and for
      every pair of a merchant that may pass the PatId1 volume threshold in this batch.
    prior_merchants: (merchant_id, total0, f0, m0) for every touched merchant.
    prior_gender: (merchant_id, gender, customer_id) already recorded, for the touched pairs.
    """
    tol = th.tolerance
    upto = Window.unboundedPreceding, Window.currentRow

    # N(m) after each chunk that touches m.
    by_merchant = Window.partitionBy("merchant_id").orderBy("chunk").rowsBetween(*upto)
    merchants = (deltas.groupBy("chunk", "merchant_id").agg(F.sum("n").alias("dn"))
                 .join(prior_merchants, "merchant_id", "left")
                 .select("chunk", "merchant_id", F.coalesce("f0", F.lit(0)).alias("f0"),
                         F.coalesce("m0", F.lit(0)).alias("m0"),
                         (F.coalesce("total0", F.lit(0)) + F.sum("dn").over(by_merchant)).alias("total")))

    # n, s, name of each touched pair after each chunk that touches it.
    by_pair = Window.partitionBy("customer_id", "merchant_id").orderBy("chunk").rowsBetween(*upto)
    touched = (deltas.select("chunk", "customer_id", "merchant_id",
                             F.sum("n").over(by_pair).alias("cn"), F.sum("s").over(by_pair).alias("cs"),
                             F.max("name").over(by_pair).alias("cname"))
               .join(prior_stats, ["customer_id", "merchant_id"], "left")
               .select("chunk", "customer_id", "merchant_id",
                       (F.col("cn") + F.coalesce("n0", F.lit(0))).alias("n"),
                       (F.col("cs") + F.coalesce("s0", F.lit(0))).alias("s"),
                       F.greatest("cname", "name0").alias("name")))

    # PatId2: n >= 80 and mean amount < 23.
    child = (touched
             .filter((F.col("n") >= th.child_min_txns - tol)
                     & (F.col("s").cast("double") / F.col("n") < th.child_max_avg_amount - tol))
             .select("chunk", F.lit("PatId2").alias("pattern_id"), "customer_id", "merchant_id",
                     F.col("name").alias("customer_name")))

    # PatId1: for each (chunk, merchant) with N(m) above the threshold, every customer of m as of that
    # chunk: the latest of its prior state (chunk 0) and its touched states up to the chunk.
    candidates = (merchants.filter(F.col("total") > th.upgrade_min_merchant_txns + tol)
                  .select(F.col("chunk").alias("k"), "merchant_id"))
    events = (prior_stats.select("customer_id", "merchant_id", F.lit(0).alias("ke"), F.col("n0").alias("n"),
                                 F.col("name0").alias("name"))
              .unionByName(touched.select("customer_id", "merchant_id", F.col("chunk").alias("ke"), "n", "name")))
    customers = (candidates.join(events, "merchant_id").filter(F.col("ke") <= F.col("k"))
                 .groupBy("k", "merchant_id", "customer_id")
                 .agg(F.max_by("n", "ke").alias("n"), F.max_by("name", "ke").alias("name")))
    customers = attach_weight(customers, weights)
    # percentile() skips nulls, so P10 ranges over the customers that have a weight.
    cut = customers.groupBy("k", "merchant_id").agg(
        F.percentile("n", th.upgrade_count_percentile).alias("p_n"),
        F.percentile("w", th.upgrade_weight_percentile).alias("p_w"))
    upgrade = (customers.join(cut, ["k", "merchant_id"])
               .filter((F.col("n") >= F.col("p_n") - tol) & F.col("w").isNotNull()
                       & (F.col("w") <= F.col("p_w") + tol))
               .select(F.col("k").alias("chunk"), F.lit("PatId1").alias("pattern_id"), "customer_id",
                       "merchant_id", F.col("name").alias("customer_name")))

    # PatId3: distinct F / M customers of m after each chunk = recorded ones + those first seen in the
    # batch at or before the chunk.
    genders = (deltas.filter("has_f").select("chunk", "merchant_id", "customer_id", F.lit("F").alias("gender"))
               .unionByName(deltas.filter("has_m")
                            .select("chunk", "merchant_id", "customer_id", F.lit("M").alias("gender"))))
    first_seen = (genders.join(prior_gender, ["merchant_id", "gender", "customer_id"], "left_anti")
                  .groupBy("merchant_id", "gender", "customer_id").agg(F.min("chunk").alias("kf"))
                  .groupBy("merchant_id", "kf")
                  .agg(F.sum(F.when(F.col("gender") == "F", 1).otherwise(0)).alias("nf"),
                       F.sum(F.when(F.col("gender") == "M", 1).otherwise(0)).alias("nm")))
    seen = F.col("kf") <= F.col("chunk")
    counts = (merchants.join(first_seen, "merchant_id", "left")
              .groupBy("chunk", "merchant_id", "f0", "m0")
              .agg(F.sum(F.when(seen, F.col("nf")).otherwise(0)).alias("df"),
                   F.sum(F.when(seen, F.col("nm")).otherwise(0)).alias("dm"))
              .select("chunk", "merchant_id", (F.col("f0") + F.col("df")).alias("f"),
                      (F.col("m0") + F.col("dm")).alias("m")))
    dei = (counts.filter((F.col("f") > th.dei_min_female_customers + tol) & (F.col("f") < F.col("m") - tol))
           .select("chunk", F.lit("PatId3").alias("pattern_id"), F.lit("").alias("customer_id"),
                   "merchant_id", F.lit("").alias("customer_name")))

    return (upgrade.unionByName(child).unionByName(dei)
            .groupBy("pattern_id", "customer_id", "merchant_id")
            .agg(F.min("chunk").alias("chunk"), F.min_by("customer_name", "chunk").alias("customer_name"))
            .select(*MATCH_COLUMNS))
