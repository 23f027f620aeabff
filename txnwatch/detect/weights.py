"""Customer weights w(c, m) from the importance file (SPEC section 2), computed once per run in Spark.

w(c, m) is the mean, over the customer's transaction types, of the mean weight per type. Rows with a
merchantId count only for that merchant; rows with an empty merchantId count for every merchant (the
file may mix both: then w(c, m) uses c's rows for m together with c's merchant-less rows). A customer
with no applicable row has no weight. Rows whose weight is not a number are ignored.

The result is one small cached DataFrame (customer_id, merchant_id, w) where merchant_id "" holds the
weight from merchant-less rows only, used for merchants c has no specific row for.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

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


def empty_weights(spark) -> DataFrame:
    return spark.createDataFrame([], WEIGHTS_SCHEMA)


def attach_weight(df: DataFrame, weights: DataFrame) -> DataFrame:
    """df (customer_id, merchant_id, ...) plus column w: the specific weight, else the generic one."""
    specific = weights.filter(F.col("merchant_id") != "").withColumnRenamed("w", "_w_cm")
    generic = (weights.filter(F.col("merchant_id") == "").select("customer_id", F.col("w").alias("_w_c")))
    return (df.join(F.broadcast(specific), ["customer_id", "merchant_id"], "left")
            .join(F.broadcast(generic), "customer_id", "left")
            .withColumn("w", F.coalesce("_w_cm", "_w_c")).drop("_w_cm", "_w_c"))
