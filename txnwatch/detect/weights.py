"""Customer weights w(c, m) from the importance file (SPEC section 2), computed once per run in Spark.

w(c, m) is the mean, over the customer's transaction types, of the mean weight per type. Rows with a
merchantId count only for that merchant; rows with an empty merchantId count for every merchant (the
file may mix both: then w(c, m) uses c's rows for m together with c's merchant-less rows). A customer
with no applicable row has no weight. Rows whose weight is not a number are ignored.

The result is one small DataFrame (customer_id, merchant_id, w) where merchant_id "" holds the weight
from merchant-less rows only, used for merchants c has no specific row for; it is collected once to the
driver, which attaches w to the state rows it hands the rules.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from txnwatch.detect.asof import Weights

WEIGHTS_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType()),
    T.StructField("merchant_id", T.StringType()),
    T.StructField("w", T.DoubleType()),
])


def compute_weights(importance: DataFrame) -> DataFrame:
    rows = (importance
            .select(F.col("customerId").alias("customer_id"),
                    F.coalesce(F.col("merchantId"), F.lit("")).alias("merchant_id"),
                    F.coalesce(F.col("transactionType"), F.lit("")).alias("t"),
                    F.col("weight").try_cast("double").alias("weight"))
            .filter(F.col("weight").isNotNull() & ~F.isnan("weight")
                    & F.col("customer_id").isNotNull() & (F.col("customer_id") != "")))
    specific = rows.filter(F.col("merchant_id") != "")
    generic = rows.filter(F.col("merchant_id") == "")
    pairs = specific.select("customer_id", "merchant_id").distinct()
    # For (c, m) with specific rows: those rows plus c's merchant-less rows.
    per_pair = specific.unionByName(
        pairs.join(generic.select("customer_id", "t", "weight"), "customer_id"))
    combined = per_pair.unionByName(generic)

    def mean_of_type_means(df: DataFrame) -> DataFrame:
        return (df.groupBy("customer_id", "merchant_id", "t").agg(F.avg("weight").alias("wt"))
                .groupBy("customer_id", "merchant_id").agg(F.avg("wt").alias("w")))

    return mean_of_type_means(combined)


def collect_weights(weights: DataFrame) -> Weights:
    """The weights on the driver (a few thousand keys), where the per-chunk state is laid out."""
    specific: dict[tuple[str, str], float] = {}
    generic: dict[str, float] = {}
    for c, m, w in zip(*weights.toArrow().to_pydict().values(), strict=True):
        if m:
            specific[(c, m)] = w
        else:
            generic[c] = w
    return Weights(specific, generic)
