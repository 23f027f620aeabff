"""The stack's standing Spark: a Spark Connect server, up and warm before anyone presses Trigger.

Databricks serverless runs Y as a Spark Connect client of a Spark that is already running
(https://docs.databricks.com/aws/en/spark/connect-vs-classic). Locally, a `spark-submit` per run starts a
JVM per run, and that start (JVM, SparkContext, the first plan's class loading and code generation) was
most of the time from Trigger to Y's readiness mark. `make airflow-up`, `make demo` and docker-compose
start this server with the Airflow services; the local runner then runs Y as a Connect client of it
(TXNWATCH_SPARK_REMOTE), and falls back to `spark-submit` when it is not reachable.

The server is Spark's own Connect plugin in a local-mode driver (`spark_session.start_connect_server`).
Once it listens, it runs Y's read plan 8 times on a synthetic 10,000-row chunk through a Connect session
of its own (warm-up), so the first Y run finds the planner and the generated code warm; then it writes
its ready file and serves until SIGTERM, SIGINT or SIGHUP. With SPARK_CONNECT_AUTHENTICATE_TOKEN set, it
refuses a client that does not present that token (the local stack generates one per Airflow home).
Y's sessions are the server's clients: their settings and temporary views are per session, and a client
that dies leaves nothing behind but an idle session, which the server expires.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path

from txnwatch.core import defaults
from txnwatch.core.errors import TxnwatchError

log = logging.getLogger("txnwatch.spark_server")

APP_NAME = "txnwatch-spark-server"
# A standing server warms once per lifetime, not per run, and while Airflow's services start: so it runs
# the read plan (defaults.SPARK_SERVER_WARM_UP_ROUNDS times) until the JIT has compiled it for a real
# chunk's volume, not just until it is loaded (a per-run Spark stops after one small round: that round
# is on every run's start-up).
WARM_UP_ROWS = 10_000


def wait_until_warm(ready_file: Path, server: subprocess.Popen, log_file: Path, timeout: float = 300.0) -> dict:
    """Wait for a server process started with `--ready-file`; what the file says (remote, up_s, warm_s)."""
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if server.poll() is not None:
            raise TxnwatchError(f"the Spark Connect server stopped before it was warm (see {log_file})")
        if time.monotonic() > deadline:
            raise TxnwatchError(f"the Spark Connect server is not warm after {timeout:.0f}s (see {log_file})")
        time.sleep(0.2)
    return json.loads(ready_file.read_text())


def serve(host: str = "127.0.0.1", port: int = defaults.SPARK_CONNECT_PORT, master: str = "local[2]",
          ready_file: Path | None = None, stop: threading.Event | None = None,
          warm_up_rounds: int = defaults.SPARK_SERVER_WARM_UP_ROUNDS) -> int:
    """Start the server, warm it, write `ready_file` ({"remote", "up_s", "warm_s"}), serve until `stop`."""
    from txnwatch.core.storage import open_store
    from txnwatch.detect.spark_session import LOCAL_TUNING_CONF, TUNING_CONF, connect_session, start_connect_server
    from txnwatch.detect.warmup import run_read_plan

    stop = stop or threading.Event()
    started = time.monotonic()
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)  # a stale file must not announce a server that is not up
    remote = start_connect_server(master, APP_NAME, host=host, port=port)
    client = connect_session(APP_NAME + "-warmup", remote)
    for key, value in {**TUNING_CONF, **LOCAL_TUNING_CONF}.items():
        client.conf.set(key, value)
    warm_s = run_read_plan(client, rows=WARM_UP_ROWS, rounds=warm_up_rounds)
    client.stop()
    info = {"remote": remote, "up_s": round(time.monotonic() - started, 2), "warm_s": round(warm_s, 2)}
    if ready_file is not None:
        # Atomically, so a waiter never reads half a file.
        open_store(str(ready_file.parent)).put(ready_file.name, json.dumps(info).encode())
    log.info("Spark Connect server ready at %s (master %s), up in %.1fs", remote, master, info["up_s"])
    try:
        stop.wait()
    finally:
        log.info("Spark Connect server stopping")
        from pyspark import SparkContext

        if SparkContext._active_spark_context is not None:
            SparkContext._active_spark_context.stop()
    return 0


def command(args) -> int:
    """`txnwatch spark-server`: serve in the foreground until SIGTERM, SIGINT or SIGHUP."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    ready_file = Path(args.ready_file) if args.ready_file else None
    try:
        return serve(args.host, args.port, args.master, ready_file, stop, args.warm_up_rounds)
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
