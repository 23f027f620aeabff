"""The detection job's SparkSession: one per process.

Three kinds of settings, applied where they belong:
- correctness (every master): each landed file is its own partition, so row numbers within a file
  (for quarantine entries) stay exact. A session-level SQL setting; it changes no cluster setting.
- small-batch tuning (a local master only): a chunk is ~10k rows, so one shuffle partition and no
  adaptive planning beat the defaults by a wide margin on 2 cores. A cluster keeps its own settings.
- process settings (only when this process starts the JVM itself): UI off, driver memory, and for a
  local master the start-up JVM options of jvm_startup.py (`spark-submit` gets them on its command line).
On Databricks the session already exists: we take it as it is (plus the correctness setting).
"""

from __future__ import annotations

import os

from txnwatch.detect.javaenv import ensure_java
from txnwatch.detect.jvm_startup import driver_java_options

CORRECTNESS_CONF = {
    # Every landed chunk file (~1 MB) its own partition: row numbers within a file stay exact, and a
    # backlog batch reads its files in parallel.
    "spark.sql.files.openCostInBytes": str(256 * 1024 * 1024),
}
LOCAL_TUNING_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def _process_conf(master: str) -> dict[str, str]:
    conf = {
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": os.environ.get("TXNWATCH_SPARK_DRIVER_MEMORY", "1g"),
    }
    java_options = driver_java_options() if master.startswith("local") else ""
    if java_options:
        conf["spark.driver.extraJavaOptions"] = java_options
    return conf


def get_spark(app_name: str = "txnwatch-detect", master: str | None = None):
    from pyspark.sql import SparkSession

    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        spark = SparkSession.builder.getOrCreate()
        _apply(spark, CORRECTNESS_CONF)
        return spark
    ensure_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the JVM is up already (PYSPARK_GATEWAY_PORT) and its --master stands.
    launched = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    master = master or os.environ.get("TXNWATCH_SPARK_MASTER") or ("" if launched else "local[2]")
    if master:
        builder = builder.master(master)
    if not launched:
        for key, value in {**_process_conf(master), **CORRECTNESS_CONF}.items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _apply(spark, CORRECTNESS_CONF)
    if spark.sparkContext.master.startswith("local"):
        _apply(spark, LOCAL_TUNING_CONF)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _apply(spark, conf: dict[str, str]) -> None:
    for key, value in conf.items():
        spark.conf.set(key, value)
