"""Helpers of the Airflow tests: one local Airflow (home + fresh metadata database) per test session,
Airflow CLI subprocesses in their own process groups, small generated data sets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from functools import lru_cache
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Trust auth ignores the password: it is there to prove no secret leaks into payloads or logs.
SECRET_PASSWORD = "s3cr3t-Pw-9f2c"
STANDIN_TOKEN = "dapi-standin-token-0123"
# The Unity Catalog volume the workspace stand-in has, where releases are deployed.
ARTIFACTS = "/Volumes/main/txnwatch/artifacts"
# The volume the stand-in's jobs read and write data in (landing zones and output).
DATA_VOLUME = "/Volumes/main/txnwatch/data"
# Cluster policies and existing clusters of the stand-in: id -> the access mode it sets / runs in.
POLICIES = {"uc-dedicated": "DATA_SECURITY_MODE_DEDICATED", "no-isolation": "NONE"}
CLUSTERS = {"0704-120000-uc": "DATA_SECURITY_MODE_DEDICATED", "0704-120000-noiso": "NONE"}


def standin_client(standin):
    """The official databricks-sdk client, pointed at the workspace stand-in."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=f"http://127.0.0.1:{standin.server.server_address[1]}", token=STANDIN_TOKEN,
                           auth_type="pat")

# Extra threshold overrides for small generated sets (the generator's scaled_thresholds come on top).
SMALL_THRESHOLDS: dict = {}


@lru_cache(maxsize=1)
def session_airflow(home: str, server_url: str):
    """A LocalAirflow with its own home and a fresh, migrated metadata database (created once)."""
    from txnwatch.local.airflow_home import local_airflow
    from txnwatch.local.metadata_db import ensure_migrated

    db = f"txnwatch_af_{uuid.uuid4().hex[:10]}"
    la = local_airflow(home=home, metadata_db=db, state_db_url=server_url, api_port=free_port(),
                       spark_port=free_port())
    # What the first `txnwatch airflow` command does: migrate, and register the DAG bundle (two `dags test`
    # processes that both find it missing race to insert it on a freshly migrated database).
    assert ensure_migrated(la)
    return la


def drop_metadata_db(la) -> None:
    from txnwatch.core.db import connect

    db = la.metadata_url.rsplit("/", 1)[1]
    with connect(la.state_db_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')




def metadata_libpq_url(la) -> str:
    """The metadata database's URL for psycopg (the LocalAirflow's is SQLAlchemy's)."""
    return la.metadata_url.replace("postgresql+psycopg2://", "postgresql://", 1)


def fail_unfinished_runs(la) -> None:
    """Mark every unfinished DAG run and task of the session's metadata database failed, as a user does in
    the UI after killing a stack mid-run. Else the next stack's scheduler adopts the orphans: it retries
    their tasks (a Y waiting for a landing zone no X will finish) and queues new runs behind them."""
    from txnwatch.core.db import connect

    with connect(metadata_libpq_url(la), autocommit=True) as conn:
        conn.execute("UPDATE task_instance SET state = 'failed' WHERE state IN "
                     "('running', 'queued', 'scheduled', 'up_for_retry', 'up_for_reschedule', 'deferred')")
        conn.execute("UPDATE dag_run SET state = 'failed' WHERE state IN ('running', 'queued')")


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """A subprocess in its own session/process group, output to `log`."""
    out = open(log, "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out.close()
    return proc


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def dags_test_cmd(la, dag_id: str, conf: dict) -> list[str]:
    return [la.airflow_executable(), "dags", "test", dag_id, "-c", json.dumps(conf)]


def generate(out_dir: Path, rows: int, seed: int = 11, layout: str = "banksim") -> tuple[Path, Path]:
    """A generated data set; returns (transactions, importance)."""
    from txnwatch.generate import generate as gen

    res = gen(rows=rows, seed=seed, layout=layout, out_dir=out_dir)
    return Path(res.transactions), Path(res.importance)


def read_detections(output: Path) -> list[dict]:
    rows = []
    for f in sorted(output.glob("detections_*.jsonl")):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return rows


def detection_keys(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["patternId"], r["customerName"], r["merchantId"]) for r in rows]


def reference_keys(landing: Path, thresholds: dict) -> list[tuple[str, str, str]]:
    """Detections of the reference implementation (tests/reference_rules.py) over a landing zone."""
    from tests import reference_rules
    from txnwatch.core.config import Thresholds
    from txnwatch.core.landing import REFERENCE_KEY
    from txnwatch.core.storage import open_store

    th = Thresholds.from_overrides([f"{k}={v}" for k, v in thresholds.items()])
    dets = reference_rules.detect_store(open_store(str(landing)), REFERENCE_KEY, th)
    return [(d.pattern_id, d.customer_name, d.merchant_id) for d in dets]


def airflow_env(la, pg_server_url: str, **extra: str) -> dict[str, str]:
    """The local Airflow env with postgres_default carrying the (ignored) secret password."""
    from urllib.parse import urlparse

    p = urlparse(pg_server_url)
    conn = {"conn_type": "postgres", "host": p.hostname, "port": p.port or 5432,
            "login": p.username or "postgres", "password": SECRET_PASSWORD,
            "schema": (p.path or "/postgres").lstrip("/") or "postgres"}
    env = dict(la.env, AIRFLOW_CONN_POSTGRES_DEFAULT=json.dumps(conn), **extra)
    env.pop("TXNWATCH_DB_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(la.env.get("AIRFLOW__CORE__PLUGINS_FOLDER", "")),
                                                    os.environ.get("PYTHONPATH", "")) if p)
    return env


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment carries TXNWATCH_TEST_TAG=`tag`: every descendant of a process
    started with it, including those in sessions of their own (spark-submit's JVM)."""
    marker = f"TXNWATCH_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or a zombie
            continue
    return found


def command_lines(pids: list[int]) -> list[str]:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        except OSError:
            continue
    return lines


def port_free(port: int) -> bool:
    """True when a server could listen on `port` now (as Airflow's does: old connections in TIME_WAIT
    do not count)."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
