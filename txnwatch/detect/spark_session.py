"""The detection job's SparkSession: one per process, tuned for small, frequent batches."""

from __future__ import annotations

import os

from txnwatch.javaenv import ensure_java


def get_spark(app_name: str = "txnwatch-detect", master: str | None = None):
    ensure_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    # On Databricks the cluster provides the session and its master; locally we pick one.
    # Under spark-submit (the JVM is already up: PYSPARK_GATEWAY_PORT) its --master stands.
    launched = bool(os.environ.get("DATABRICKS_RUNTIME_VERSION") or os.environ.get("PYSPARK_GATEWAY_PORT"))
    if master or os.environ.get("TXNWATCH_SPARK_MASTER") or not launched:
        builder = builder.master(master or os.environ.get("TXNWATCH_SPARK_MASTER", "local[2]"))
    conf = {
        # A chunk is ~10k rows: one shuffle partition beats the default 200 (and 2) by a wide margin.
        "spark.sql.shuffle.partitions": "1",
        "spark.default.parallelism": "2",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "false",
        # Every landed chunk file (~1 MB) its own partition: a backlog batch reads files in parallel,
        # and row numbers within a file (for quarantine entries) stay exact.
        "spark.sql.files.openCostInBytes": str(256 * 1024 * 1024),
        "spark.driver.memory": os.environ.get("TXNWATCH_SPARK_DRIVER_MEMORY", "2g"),
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
