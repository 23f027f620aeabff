"""The detection job's SparkSession: one per process, classic or Spark Connect.

Y runs as a classic PySpark driver (`spark-submit`, a local master, Databricks dedicated access mode) or
as a Spark Connect client: Databricks serverless jobs compute and standard access mode run the driver's
Python against Spark Connect, with no `sparkContext` and no JVM in the process
(https://docs.databricks.com/aws/en/compute/access-mode-limitations,
https://docs.databricks.com/aws/en/spark/connect-vs-classic). `SPARK_REMOTE` selects Connect here as it
does in pyspark: `local[N]` starts a local Connect server, `sc://host:port` joins one. The job uses only
the DataFrame API, so the same code runs either way.

Settings, applied where they belong:
- tuning (every session, best effort): each landed file its own partition, so a backlog batch reads its
  files in parallel. Serverless accepts only a short list of Spark properties
  (https://docs.databricks.com/aws/en/spark/conf#serverless) and refuses the rest with
  CONFIG_NOT_AVAILABLE: no setting here is needed for correctness (reader.py numbers rows per file
  whatever the partitioning), so a refused one is logged and skipped.
- small-batch tuning (a local master only): a chunk is ~10k rows, so one shuffle partition and no
  adaptive planning beat the defaults by a wide margin on 2 cores. A cluster keeps its own settings.
- process settings (only when this process starts the JVM or the local Connect server itself): UI off,
  driver memory, and for a classic local master the start-up JVM options of jvm_startup.py.
On Databricks the session already exists: we take it as it is.
"""

from __future__ import annotations

import logging
import os
import sys

from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.detect.javaenv import ensure_java
from txnwatch.detect.jvm_startup import driver_java_options

log = logging.getLogger("txnwatch.detect")

TUNING_CONF = {
    # Every landed chunk file (~1 MB) its own partition: a backlog batch reads its files in parallel.
    "spark.sql.files.openCostInBytes": str(256 * 1024 * 1024),
}
LOCAL_TUNING_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def deployment_conf(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Settings a deployment adds to a Spark this process starts (e.g. docker-compose: hadoop-aws and s3a
    for MinIO): TXNWATCH_SPARK_PACKAGES (Maven coordinates) and TXNWATCH_SPARK_CONF (`k=v,k=v`)."""
    environ = os.environ if environ is None else environ
    conf = {}
    if environ.get("TXNWATCH_SPARK_PACKAGES", "").strip():
        conf["spark.jars.packages"] = environ["TXNWATCH_SPARK_PACKAGES"].strip()
    for item in filter(None, (x.strip() for x in environ.get("TXNWATCH_SPARK_CONF", "").split(","))):
        key, _, value = item.partition("=")
        conf[key.strip()] = value.strip()
    return conf


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


def spark_remote() -> str:
    """The Spark Connect address this process is told to use (`SPARK_REMOTE`), or ""."""
    return os.environ.get("SPARK_REMOTE", "").strip()


def is_connect(spark) -> bool:
    """Whether `spark` is a Spark Connect client session (no sparkContext, no JVM behind it).

    Without importing the Connect client: a Connect session exists only once its module is loaded, and
    loading it (grpc, pandas, ...) cost a classic driver's start-up 0.4-0.6 s."""
    connect = sys.modules.get("pyspark.sql.connect.session")
    return connect is not None and isinstance(spark, connect.SparkSession)


def master_of(spark) -> str:
    """The session's master URL ("" when the server will not say), for classic and Connect alike."""
    try:
        return spark.conf.get("spark.master", "") or ""
    except Exception:  # noqa: BLE001 - a server may refuse to read a static setting
        return ""


def get_spark(app_name: str = "txnwatch-detect", master: str | None = None):
    from pyspark.sql import SparkSession

    remote = spark_remote()
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        spark = SparkSession.builder.getOrCreate()
        _apply(spark, TUNING_CONF)
        log.info("Spark on Databricks: %s", f"Spark Connect client of {remote.split(';')[0] or 'the runtime'}"
                 if is_connect(spark) else "classic driver")
        return spark
    if remote:
        spark = connect_session(app_name, remote)
    else:
        spark = _classic_session(SparkSession, app_name, master)
    _apply(spark, TUNING_CONF)
    if master_of(spark).startswith("local"):
        _apply(spark, LOCAL_TUNING_CONF)
    if not is_connect(spark):
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def connect_session(app_name: str, remote: str):
    """A Spark Connect client. A master cannot be set on it (CANNOT_CONFIGURE_SPARK_CONNECT_MASTER)."""
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except ImportError as e:  # pyspark's Connect client needs grpcio, grpcio-status, zstandard, ...
        raise TxnwatchError(f"SPARK_REMOTE={remote.split(';')[0]} asks for a Spark Connect client, but its "
                            f"dependencies are missing ({first_line(e)}): install pyspark[connect]") from None

    if remote.startswith("local"):
        remote = start_connect_server(remote, app_name)
    # The Connect builder itself: pyspark's generic one refuses a client beside this process's own
    # (server-side) context.
    spark = ConnectSession.builder.remote(remote).appName(app_name).getOrCreate()
    # What pyspark's own remote path sets: `pyspark.sql.functions` then builds Connect columns, even
    # though this process also holds the local server's (classic) context.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    log.info("Spark Connect client of %s", remote.split(";")[0])
    return spark


def start_connect_server(master: str, app_name: str, host: str = "127.0.0.1", port: int = 0) -> str:
    """Start a Spark Connect server in this process's JVM; its address (`sc://127.0.0.1:port`, or
    `sc://localhost:port` when SPARK_CONNECT_AUTHENTICATE_TOKEN makes it require a token: pyspark sends a
    token without TLS only to `localhost`, through gRPC's local credentials).

    By default on an ephemeral loopback port: pyspark's own `SPARK_REMOTE=local[N]` serves on the fixed
    port 15002, so a second local job on the machine (or a job beside the test suite) could not start.
    The server is the same plugin pyspark uses. `host` is the address it binds (0.0.0.0 in a container).
    """
    from pyspark import SparkConf, SparkContext

    ensure_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = {**_process_conf(master), **deployment_conf(), "spark.master": master, "spark.app.name": app_name,
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
            "spark.connect.grpc.binding.address": host, "spark.connect.grpc.binding.port": str(port)}
    token = os.environ.get("SPARK_CONNECT_AUTHENTICATE_TOKEN")
    if token:
        conf["spark.connect.authenticate.token"] = token
    # Else pyspark would refuse this (server-side) context as a client's; a parent job's Connect mode may
    # also come in the environment.
    saved = {k: os.environ.pop(k) for k in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED") if k in os.environ}
    try:
        sc = SparkContext.getOrCreate(SparkConf().setAll(list(conf.items())))
    finally:
        os.environ.update(saved)
    sc.setLogLevel("ERROR")
    service = getattr(getattr(sc._jvm, "org.apache.spark.sql.connect.service.SparkConnectService$"), "MODULE$")
    return f"sc://{'localhost' if token else '127.0.0.1'}:{service.localPort()}"


def _classic_session(session_cls, app_name: str, master: str | None):
    ensure_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = session_cls.builder.appName(app_name)
    # Under spark-submit the JVM is up already (PYSPARK_GATEWAY_PORT) and its --master stands.
    launched = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    master = master or os.environ.get("TXNWATCH_SPARK_MASTER") or ("" if launched else "local[2]")
    if master:
        builder = builder.master(master)
    if not launched:
        for key, value in {**_process_conf(master), **TUNING_CONF}.items():
            builder = builder.config(key, value)
    return builder.getOrCreate()


def _apply(spark, conf: dict[str, str]) -> None:
    for key, value in conf.items():
        try:
            spark.conf.set(key, value)
        except Exception as e:  # noqa: BLE001 - e.g. serverless: CONFIG_NOT_AVAILABLE
            log.info("Spark setting %s left at the platform's value: %s", key, first_line(e, limit=200))
