"""`make demo`: the whole pipeline through Airflow, as a user would run it from the UI.

1. Generates the BankSim-shaped data set if absent (full size; TXNWATCH_DEMO_ROWS shrinks it).
2. Brings up Y's standing Spark (a warm Spark Connect server) and Airflow locally (API server, scheduler,
   DAG processor, triggerer) in one process group, with Airflow's metadata in PostgreSQL (`txnwatch
   airflow`'s configuration).
3. Triggers `mechanism_y_detect` through the REST API v2 (as the UI's trigger form does), waits until Y
   records its readiness mark in Postgres (`y_checkpoint.ready_at` of this run: Spark is warm), then
   triggers `mechanism_x_ingest`, shows progress, waits for both runs.
4. Prints the summary and where to look (UI and login, output folder, report PNG), then stops every
   process it started; so do SIGINT, SIGTERM and SIGHUP at any moment.

Environment: TXNWATCH_DEMO_ROWS (default 594,643), TXNWATCH_DEMO_INTERVAL (default 1.0 s),
TXNWATCH_DEMO_ROWS_PER_CHUNK (default 10,000), TXNWATCH_DEMO_SCHEMA (default txnwatch_demo),
TXNWATCH_AIRFLOW_PORT (default 8080, else a free port), TXNWATCH_SPARK_PORT (Y's standing Spark, default
15002, else a free port).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from txnwatch.airflow.settings import X_DAG_ID, Y_DAG_ID
from txnwatch.core.defaults import FULL_ROWS

DEMO_SCHEMA = "txnwatch_demo"
QUEUED_NOTE_S = 15.0  # a Y run queued this long is looked into: is another run holding its slot?
TERMINAL = ("success", "failed")


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PipelineResult:
    states: dict[str, str]
    run_ids: dict[str, str]
    seconds: float
    y_ready_s: float | None = None  # from triggering Y to its readiness mark

    @property
    def ok(self) -> bool:
        return all(s == "success" for s in self.states.values())


def progress_line(db_url: str, schema: str) -> str:
    """X's and Y's progress from their checkpoints in Postgres."""
    from txnwatch.core.db import connect
    from txnwatch.records.progress import progress

    try:
        with connect(db_url) as conn:
            return progress(conn, schema).line()
    except Exception:
        return "waiting for the state tables"


def y_ready_check(db_url: str, schema: str):
    """A callable telling whether a Y run started from now on is warm (its readiness mark in Postgres)."""
    from txnwatch.core.db import connect
    from txnwatch.records.readiness import db_now, y_readiness

    with connect(db_url) as conn:
        since = db_now(conn)

    def ready() -> bool:
        try:
            with connect(db_url) as conn:
                marks = y_readiness(conn, schema)
        except Exception:  # the schema is being created by the DAG's first task
            return False
        return marks is not None and marks.ready_since(since)

    return ready


def run_pipeline(api, conf_x: dict, conf_y: dict, y_ready, timeout: float = 3600.0,
                 ready_timeout: float = 600.0, on_progress=None, poll: float = 1.0) -> PipelineResult:
    """Trigger Y, wait until it reports ready (`y_ready()`), trigger X, wait until both runs finish.

    Y is the consumer: started first, it has its Spark session warm when X lands chunk 1, so no chunk's
    lag carries Y's start-up. If Y's run ends before it is ready (a failure), X is not started.
    """
    t0 = time.monotonic()
    runs: dict[str, str] = {}
    states: dict[str, str] = {}
    api.unpause(Y_DAG_ID)
    runs[Y_DAG_ID] = api.trigger(Y_DAG_ID, conf_y)["dag_run_id"]
    states[Y_DAG_ID] = "queued"
    y_ready_s = None
    blocker_named = False
    while y_ready_s is None:
        states[Y_DAG_ID] = api.dag_run(Y_DAG_ID, runs[Y_DAG_ID])["state"]
        if y_ready():
            y_ready_s = time.monotonic() - t0
            break
        if states[Y_DAG_ID] in TERMINAL:
            return PipelineResult(states=states, run_ids=runs, seconds=time.monotonic() - t0)
        if on_progress:
            on_progress(states)
        if states[Y_DAG_ID] == "queued" and not blocker_named and time.monotonic() - t0 > QUEUED_NOTE_S:
            blocker_named = True
            note = queued_behind(api, Y_DAG_ID, runs[Y_DAG_ID])
            if note and on_progress:
                on_progress(states, note)
        if time.monotonic() - t0 > ready_timeout:
            raise TimeoutError(f"{Y_DAG_ID} not ready after {ready_timeout:.0f}s: {states}")
        time.sleep(min(poll, 0.5))
    if on_progress:
        on_progress(states, f"Y ready after {y_ready_s:.1f}s: triggering {X_DAG_ID}")
    api.unpause(X_DAG_ID)
    runs[X_DAG_ID] = api.trigger(X_DAG_ID, conf_x)["dag_run_id"]
    states[X_DAG_ID] = "queued"
    while True:
        for dag_id, run_id in runs.items():
            states[dag_id] = api.dag_run(dag_id, run_id)["state"]
        if on_progress:
            on_progress(states)
        if all(s in TERMINAL for s in states.values()):
            break
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"DAG runs not finished after {timeout:.0f}s: {states}")
        time.sleep(poll)
    return PipelineResult(states=states, run_ids=runs, seconds=time.monotonic() - t0, y_ready_s=y_ready_s)


def queued_behind(api, dag_id: str, run_id: str) -> str | None:
    """Why a run stays queued, when another run of its DAG holds the one slot (max_active_runs=1): e.g. a
    run left `running` by a stack that was killed, which nothing will finish."""
    others = [r for r in api.dag_runs(dag_id, state="running") if r != run_id]
    if not others:
        return None
    return (f"{dag_id} run {run_id} is queued behind {', '.join(others)}, still `running` (one run at a "
            f"time): if nothing runs it any more (a stack killed mid-run), mark it failed in the UI "
            f"({dag_id} → Runs) and this one starts")


def _reset(db_url: str, schema: str, *folders: Path) -> None:
    from txnwatch.core.db import connect

    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
    with connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def live_view_line(api_url: str, user: str, password_file: Path) -> str:
    """Where the live view of the demo's schema is (the txnwatch plugin), with the UI login."""
    return (f"live view       : {api_url}/plugin/txnwatch (pick schema {DEMO_SCHEMA}), or directly "
            f"{api_url}/txnwatch/view?schema={DEMO_SCHEMA} — user {user}, password in {password_file}")


def main() -> int:
    """`make demo`; SIGINT, SIGTERM and SIGHUP stop every process it started (exit 128 + signal)."""
    from txnwatch.core.errors import TxnwatchError
    from txnwatch.local.stack import StopRequested, exit_code, stop_on_signals

    with stop_on_signals():
        try:
            return _demo()
        except StopRequested as stop:
            _say(f"{stop}: stopped")
            return exit_code(stop)
        except (TxnwatchError, TimeoutError) as e:  # Airflow stopped already (the finally in _demo)
            _say(f"error: {e}")
            return 1


def _demo() -> int:
    logging.basicConfig(level=logging.WARNING)
    from txnwatch.airflow.airflow_api import AirflowAPI
    from txnwatch.core.db import connect
    from txnwatch.core.defaults import SPARK_CONNECT_PORT
    from txnwatch.core.paths import local_dir
    from txnwatch.generate import demo_data_dir, ensure_demo_data
    from txnwatch.local.airflow_home import ADMIN_USER, local_airflow
    from txnwatch.local.stack import AirflowStack, StopRequested, port_free
    from txnwatch.records.summary import format_summary

    rows = int(os.environ.get("TXNWATCH_DEMO_ROWS", FULL_ROWS))
    interval = float(os.environ.get("TXNWATCH_DEMO_INTERVAL", "1.0"))
    rows_per_chunk = int(os.environ.get("TXNWATCH_DEMO_ROWS_PER_CHUNK", "10000"))
    schema = os.environ.get("TXNWATCH_DEMO_SCHEMA", DEMO_SCHEMA)
    port = int(os.environ.get("TXNWATCH_AIRFLOW_PORT", "8080"))
    if not port_free(port):
        new = _free_port()
        _say(f"port {port} is busy: the Airflow API server uses {new}")
        port = new
    spark_port = int(os.environ.get("TXNWATCH_SPARK_PORT", SPARK_CONNECT_PORT))
    if not port_free(spark_port):
        new = _free_port()
        _say(f"port {spark_port} is busy: Y's standing Spark uses {new}")
        spark_port = new

    t_start = time.monotonic()
    data_dir = demo_data_dir(rows)
    tx, imp, generated = ensure_demo_data(data_dir, rows, say=_say)
    if not generated:
        _say(f"using the data set in {data_dir}")
    la = local_airflow(api_port=port, spark_port=spark_port)
    demo_dir = local_dir() / "demo"
    landing, output, plot = demo_dir / "landing", demo_dir / "output", demo_dir / "report.png"
    _reset(la.state_db_url, schema, landing, output)
    plot.unlink(missing_ok=True)

    thresholds: dict = {}
    if rows != FULL_ROWS:
        from txnwatch.generate import scaled_thresholds

        thresholds = scaled_thresholds(rows)
    conf_x = {"source": str(tx), "importance": str(imp), "landing": str(landing),
              "rows_per_chunk": rows_per_chunk, "interval_seconds": interval, "max_chunks": None,
              "schema": schema}
    conf_y = {"landing": str(landing), "output": str(output), "runner": "local", "until_end": True,
              "schema": schema, "thresholds": thresholds}

    stack = AirflowStack(la, la.home / "logs" / "services")
    stack.migrate(say=_say)
    _say(f"starting Y's standing Spark and Airflow (api-server, scheduler, dag-processor, triggerer); "
         f"logs in {stack.log_dir}")
    code = 1
    try:
        stack.start()
        api = AirflowAPI(la.api_url, ADMIN_USER, la.admin_password())
        api.wait_ready([X_DAG_ID, Y_DAG_ID])
        spark = stack.wait_spark()
        _say(f"Y's standing Spark is warm at {spark['remote']} (up in {spark['up_s']:.1f}s)")
        _say(f"Airflow is up at {la.api_url}: triggering {Y_DAG_ID} (consumer first) through the REST API")
        _say(live_view_line(la.api_url, ADMIN_USER, la.password_file))
        last = [0.0]

        def show(states: dict, note: str | None = None) -> None:
            if note or time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                runs = ", ".join(f"{d}: {s}" for d, s in states.items())
                _say(note or f"{runs} | {progress_line(la.state_db_url, schema)}")
                if stack.dead():
                    raise RuntimeError(f"Airflow services died: {stack.dead()} (see {stack.log_dir})")

        result = run_pipeline(api, conf_x, conf_y, y_ready_check(la.state_db_url, schema), on_progress=show)
        _say(f"DAG runs finished in {result.seconds:.0f}s: {result.states}")
        from txnwatch.records.report import collect_report

        with connect(la.state_db_url) as conn:
            report = collect_report(conn, schema)
        print("\n=== summary ===\n" + format_summary(report))
        if result.y_ready_s is not None:
            print(f"Y ready after    : {result.y_ready_s:.1f}s from its trigger (X started then)")
        subprocess.run([sys.executable, "-m", "txnwatch", "report", "--db", la.state_db_url, "--schema",
                        schema, "--plot", str(plot)], capture_output=True, timeout=300)
        files = sorted(output.glob("detections_*.jsonl"))
        print("\n=== where to look ===")
        print(f"Airflow UI      : {la.api_url}  (user {ADMIN_USER}, password in {la.password_file}) - "
              "only while `make demo` runs; `make airflow-up` brings it back")
        print(live_view_line(la.api_url, ADMIN_USER, la.password_file) + " - while Airflow runs")
        print(f"DAG runs        : {', '.join(f'{d}/{r}' for d, r in result.run_ids.items())}")
        print(f"detections      : {output} ({len(files)} files)")
        print(f"report PNG      : {plot if plot.exists() else '(not drawn)'}")
        print(f"task logs       : {la.home / 'logs'}")
        print(f"wall time       : {time.monotonic() - t_start:.0f}s")
        code = 0 if result.ok else 1
    except StopRequested:
        raise
    finally:
        _say("stopping Airflow")
        stack.stop()
        _say("all Airflow processes stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
