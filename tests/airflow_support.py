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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Thresholds that make all three rules fire on a small generated set.
SMALL_THRESHOLDS = {"upgrade_min_merchant_txns": 2000, "child_min_txns": 8, "dei_min_female_customers": 10}


@lru_cache(maxsize=1)
def session_airflow(home: str, server_url: str):
    """A LocalAirflow with its own home and a fresh, migrated metadata database (created once)."""
    from txnwatch.airflow_local import local_airflow

    db = f"txnwatch_af_{uuid.uuid4().hex[:10]}"
    la = local_airflow(home=home, metadata_db=db, state_db_url=server_url, api_port=_free_port())
    env = dict(la.env)
    out = subprocess.run([la.airflow_executable(), "db", "migrate"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return la


def drop_metadata_db(la) -> None:
    from txnwatch.db import connect

    db = la.metadata_url.rsplit("/", 1)[1]
    with connect(la.state_db_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
