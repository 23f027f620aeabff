"""`make demo`: the whole pipeline through Airflow, as a user would run it from the UI.

1. Generates the BankSim-shaped data set if absent (full size; TXNWATCH_DEMO_ROWS shrinks it).
2. Brings up Airflow locally (API server, scheduler, DAG processor, triggerer) in one process group,
   with its metadata in PostgreSQL (`txnwatch airflow`'s configuration).
3. Triggers `mechanism_y_detect` and `mechanism_x_ingest` through the REST API v2 (as the UI's trigger
   form does), shows progress, waits for both runs.
4. Prints the summary and where to look (UI and login, output folder, report PNG), then stops every
   process it started.

Environment: TXNWATCH_DEMO_ROWS (default 594,643), TXNWATCH_DEMO_INTERVAL (default 1.0 s),
TXNWATCH_DEMO_ROWS_PER_CHUNK (default 10,000), TXNWATCH_AIRFLOW_PORT (default 8080, else a free port).
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

from txnwatch.orchestration.settings import REPO_ROOT, X_DAG_ID, Y_DAG_ID

FULL_ROWS = 594_643
DEMO_SCHEMA = "txnwatch_demo"
TERMINAL = ("success", "failed")


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PipelineResult:
    states: dict[str, str]
    run_ids: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(s == "success" for s in self.states.values())


def progress_line(db_url: str, schema: str) -> str:
    """X's and Y's progress from their checkpoints in Postgres."""
    from txnwatch.db import connect

    try:
        with connect(db_url) as conn:
            x = conn.execute("SELECT coalesce(max(last_chunk), 0), bool_or(finished) "
                             f"FROM {schema}.x_checkpoint").fetchone()
            y = conn.execute(f"SELECT coalesce(max(last_chunk), 0) FROM {schema}.y_checkpoint").fetchone()
            d = conn.execute(f"SELECT count(*) FROM {schema}.detected_patterns").fetchone()
        return (f"X landed chunk {x[0]}{' (done)' if x[1] else ''} | Y processed chunk {y[0]} | "
                f"{d[0]} detections")
    except Exception:
        return "waiting for the state tables"


def run_pipeline(api, conf_x: dict, conf_y: dict, timeout: float = 3600.0, on_progress=None,
                 poll: float = 2.0) -> PipelineResult:
    """Trigger both DAGs through the REST API and wait until both runs are finished."""
    t0 = time.monotonic()
    runs: dict[str, str] = {}
    for dag_id, conf in ((Y_DAG_ID, conf_y), (X_DAG_ID, conf_x)):
        api.unpause(dag_id)
        runs[dag_id] = api.trigger(dag_id, conf)["dag_run_id"]
    states = {d: "queued" for d in runs}
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
    return PipelineResult(states=states, run_ids=runs, seconds=time.monotonic() - t0)


def _dataset(rows: int) -> tuple[Path, Path]:
    from txnwatch.generate import generate

    out = REPO_ROOT / ".local" / ("data" if rows == FULL_ROWS else f"data_{rows}")
    tx, imp = out / "transactions.csv", out / "customer_importance.csv"
    if not (tx.exists() and imp.exists()):
        _say(f"generating a BankSim-shaped data set of {rows:,} rows in {out}")
        generate(rows=rows, seed=7, layout="banksim", out_dir=out)
    else:
        _say(f"using the data set in {out}")
    return tx, imp


def _reset(db_url: str, *folders: Path) -> None:
    from txnwatch.db import connect

    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
    with connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {DEMO_SCHEMA} CASCADE")


def live_view_line(api_url: str, user: str, password_file: Path) -> str:
    """Where the live view of the demo's schema is (the txnwatch plugin), with the UI login."""
    return (f"live view       : {api_url}/plugin/txnwatch (pick schema {DEMO_SCHEMA}), or directly "
            f"{api_url}/txnwatch/view?schema={DEMO_SCHEMA} — user {user}, password in {password_file}")


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    from txnwatch.airflow_local import ADMIN_USER, local_airflow
    from txnwatch.db import connect
    from txnwatch.orchestration.airflow_api import AirflowAPI
    from txnwatch.orchestration.stack import AirflowStack
    from txnwatch.orchestration.summary import format_summary

    rows = int(os.environ.get("TXNWATCH_DEMO_ROWS", FULL_ROWS))
    interval = float(os.environ.get("TXNWATCH_DEMO_INTERVAL", "1.0"))
    rows_per_chunk = int(os.environ.get("TXNWATCH_DEMO_ROWS_PER_CHUNK", "10000"))
    port = int(os.environ.get("TXNWATCH_AIRFLOW_PORT", "8080"))
    if not _port_free(port):
        new = _free_port()
        _say(f"port {port} is busy: the Airflow API server uses {new}")
        port = new

    t_start = time.monotonic()
    tx, imp = _dataset(rows)
    la = local_airflow(api_port=port)
    demo_dir = REPO_ROOT / ".local" / "demo"
    landing, output, plot = demo_dir / "landing", demo_dir / "output", demo_dir / "report.png"
    _reset(la.state_db_url, landing, output)
    plot.unlink(missing_ok=True)

    thresholds: dict = {}
    if rows != FULL_ROWS:
        from txnwatch.generate import scaled_thresholds

        thresholds = scaled_thresholds(rows)
    conf_x = {"source": str(tx), "importance": str(imp), "landing": str(landing),
              "rows_per_chunk": rows_per_chunk, "interval_seconds": interval, "max_chunks": None,
              "schema": DEMO_SCHEMA}
    conf_y = {"landing": str(landing), "output": str(output), "runner": "local", "until_end": True,
              "schema": DEMO_SCHEMA, "thresholds": thresholds}

    stack = AirflowStack(la, la.home / "logs" / "services")
    _say("migrating the Airflow metadata database")
    stack.migrate()
    _say(f"starting Airflow (api-server, scheduler, dag-processor, triggerer); logs in {stack.log_dir}")
    code = 1
    try:
        stack.start()
        api = AirflowAPI(la.api_url, ADMIN_USER, la.admin_password())
        api.wait_ready([X_DAG_ID, Y_DAG_ID], timeout=240)
        _say(f"Airflow is up at {la.api_url} — triggering both DAGs through the REST API")
        _say(live_view_line(la.api_url, ADMIN_USER, la.password_file))
        last = [0.0]

        def show(states: dict) -> None:
            if time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                runs = ", ".join(f"{d}: {s}" for d, s in states.items())
                _say(f"{runs} | {progress_line(la.state_db_url, DEMO_SCHEMA)}")
                if stack.dead():
                    raise RuntimeError(f"Airflow services died: {stack.dead()} (see {stack.log_dir})")

        result = run_pipeline(api, conf_x, conf_y, on_progress=show)
        _say(f"DAG runs finished in {result.seconds:.0f}s: {result.states}")
        from txnwatch.report import collect_report

        with connect(la.state_db_url) as conn:
            report = collect_report(conn, DEMO_SCHEMA)
        print("\n=== summary ===\n" + format_summary(report))
        subprocess.run([sys.executable, "-m", "txnwatch", "report", "--db", la.state_db_url, "--schema",
                        DEMO_SCHEMA, "--plot", str(plot)], capture_output=True, timeout=300)
        files = sorted(output.glob("detections_*.jsonl"))
        print("\n=== where to look ===")
        print(f"Airflow UI      : {la.api_url}  (user {ADMIN_USER}, password in {la.password_file}) — "
              "only while `make demo` runs; `txnwatch airflow api-server` brings it back")
        print(live_view_line(la.api_url, ADMIN_USER, la.password_file) + " — while Airflow runs")
        print(f"DAG runs        : {', '.join(f'{d}/{r}' for d, r in result.run_ids.items())}")
        print(f"detections      : {output} ({len(files)} files)")
        print(f"report PNG      : {plot if plot.exists() else '(not drawn)'}")
        print(f"task logs       : {la.home / 'logs'}")
        print(f"wall time       : {time.monotonic() - t_start:.0f}s")
        code = 0 if result.ok else 1
    except KeyboardInterrupt:
        _say("interrupted")
        code = 130
    finally:
        _say("stopping Airflow")
        stack.stop()
        _say("all Airflow processes stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
