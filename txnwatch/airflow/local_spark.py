"""The local runner of Mechanism Y: the same entry script Databricks runs, as a Spark Connect client of
the stack's standing Spark server (txnwatch.local.spark_server) when TXNWATCH_SPARK_REMOTE names one that
answers, else with its own JVM through `spark-submit`.

The database URL reaches the job through the environment (TXNWATCH_DB_URL), never argv, so it shows up
neither in the process list nor in Airflow's logs.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from txnwatch.core import defaults
from txnwatch.core.paths import DETECT_ENTRY_SCRIPT
from txnwatch.databricks.payload import detect_parameters
from txnwatch.detect.spark_session import deployment_conf


def spark_submit_executable() -> str:
    """pyspark's bin/spark-submit installed next to this interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / "spark-submit"
    if candidate.exists():
        return str(candidate)
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "spark-submit"
        if bundled.exists():
            return str(bundled)
    return "spark-submit"


def spark_submit_command(landing: str, output: str, schema: str, until_end: bool = True,
                         thresholds: dict | None = None, max_batch_chunks: int | None = None,
                         master: str | None = None, entry_script: str | Path = DETECT_ENTRY_SCRIPT,
                         packages: str | None = None) -> list[str]:
    master = master or os.environ.get("TXNWATCH_SPARK_MASTER", "local[2]")
    cmd = [spark_submit_executable(), "--master", master,
           "--conf", "spark.ui.enabled=false", "--conf", "spark.log.level=WARN",
           "--conf", f"spark.pyspark.python={sys.executable}",
           "--conf", f"spark.pyspark.driver.python={sys.executable}"]
    # e.g. docker-compose: hadoop-aws for s3a, and s3a settings for MinIO.
    conf = deployment_conf()
    packages = packages or conf.pop("spark.jars.packages", None)
    if packages:
        cmd += ["--packages", packages]
    if master.startswith("local"):  # fast JVM start-up for a local driver (see detect/jvm_startup.py)
        from txnwatch.detect.jvm_startup import driver_java_options

        java_options = driver_java_options()
        if java_options:
            cmd += ["--driver-java-options", java_options]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append(str(entry_script))
    cmd += detect_parameters(landing, output, schema, until_end, thresholds, max_batch_chunks)
    return cmd


def remote_address(remote: str) -> tuple[str, int]:
    """(host, port) of an `sc://host:port[/;params]` address; the port defaults to Spark Connect's."""
    parsed = urlparse(remote.split(";")[0])
    if parsed.scheme != "sc" or not parsed.hostname:
        raise ValueError(f"not a Spark Connect address (sc://host:port): {remote.split(';')[0]!r}")
    return parsed.hostname, parsed.port or defaults.SPARK_CONNECT_PORT


def reachable(remote: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at the Spark Connect address `remote`."""
    try:
        host, port = remote_address(remote)
    except ValueError:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def standing_spark(environ: dict[str, str] | None = None) -> str:
    """The standing Spark Connect server to run Y on (TXNWATCH_SPARK_REMOTE), or "" when none is set or it
    does not accept connections (then Y starts its own Spark, and the caller says so)."""
    remote = (os.environ if environ is None else environ).get("TXNWATCH_SPARK_REMOTE", "").strip()
    return remote if remote and reachable(remote) else ""


def connect_client_command(landing: str, output: str, schema: str, until_end: bool = True,
                           thresholds: dict | None = None, max_batch_chunks: int | None = None,
                           entry_script: str | Path = DETECT_ENTRY_SCRIPT) -> list[str]:
    """The entry script under this interpreter: with SPARK_REMOTE set it is a Spark Connect client, as
    on Databricks serverless."""
    return [sys.executable, str(entry_script),
            *detect_parameters(landing, output, schema, until_end, thresholds, max_batch_chunks)]


def spark_submit_env(db_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    from txnwatch.detect.javaenv import ensure_java

    ensure_java()
    env = dict(os.environ)
    env.update(extra or {})
    env["TXNWATCH_DB_URL"] = db_url
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# A line of spark-submit's output: log4j's "26/11/26 15:00:00 WARN Foo: ..." or the job's Python logging
# "2026-11-26 15:00:00,123 WARNING txnwatch.detect: ...". The task log adds its own timestamp, so the
# line's is dropped; its level becomes the record's level.
_SPARK_LINE = re.compile(
    r"^(?:\d{2,4}[/-]\d{2}[/-]\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s+)"
    r"(?:(?P<level>TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\s+)?(?P<rest>.*)$")
_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
           "CRITICAL": logging.CRITICAL}


def spark_log_record(line: str) -> tuple[int, str]:
    """(level, message) of one output line: its own timestamp dropped, its level kept (default INFO)."""
    m = _SPARK_LINE.match(line)
    if not m:
        return logging.INFO, line
    level = m.group("level")
    return (_LEVELS[level] if level else logging.INFO), m.group("rest")


def log_spark_line(logger: logging.Logger | logging.LoggerAdapter, line: str) -> None:
    """Log one line of spark-submit's output at its own level, with the task log's timestamp only."""
    level, message = spark_log_record(line)
    logger.log(level, "%s", message)


class SparkSubmitProcess:
    """One spark-submit in its own process group: streams its output, can be stopped as a whole."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: str | Path | None = None) -> None:
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._lock = threading.RLock()  # stop() may run in a signal handler (on_kill) of the same thread
        self.stopped = False

    def run(self, on_line: Callable[[str], None]) -> int:
        with self._lock:
            if self.stopped:
                return -signal.SIGTERM
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1,
                                         start_new_session=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            on_line(line.rstrip("\n"))
        return self.proc.wait()

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL after `grace` seconds."""
        with self._lock:
            self.stopped = True
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
