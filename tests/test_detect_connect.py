"""Y as a Spark Connect client, as Databricks serverless jobs compute and standard access mode run it.

`SPARK_REMOTE=local[2]` makes `txnwatch detect` a Connect client of a local Spark Connect server (no
sparkContext, no JVM calls from the job's Python): on a generated full-size set it writes exactly what a
classic run writes, file by file. The rest of Y's reference, restart and kill tests run under Connect
too: `make test` runs `pytest -k detect` a second time with SPARK_REMOTE set (see the Makefile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from txnwatch.generate import generate

FULL_ROWS = 594_643
TIMES = ("YStartTime", "detectionTime")


def _files(out: Path) -> list[list[dict]]:
    """Every output file's detections, in order, without the two times a rerun changes."""
    return [[{k: v for k, v in json.loads(line).items() if k not in TIMES} for line in f.read_text().splitlines()]
            for f in sorted(out.glob("detections_*.jsonl"))]


def _txnwatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "txnwatch", *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


# The runtime-matched venv (.venv-dbr) has pyspark without its Connect client's dependencies.
pytest.importorskip("grpc", reason="the Spark Connect client's dependencies are not installed in this venv")


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """A generated BankSim-sized set (594,643 rows)."""
    files = generate(FULL_ROWS, seed=7, layout="banksim", out_dir=tmp_path_factory.mktemp("full"))
    return files.transactions, files.importance


@pytest.mark.slow
def test_a_connect_client_writes_what_a_classic_run_writes(full_size, tmp_path, pg_server_url, schema):
    import uuid

    from txnwatch.core.db import connect

    source, importance = full_size
    classic_env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    runs = {}
    connect_schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        for mode, env, sch in (("classic", classic_env, schema),
                               ("connect", dict(classic_env, SPARK_REMOTE="local[2]"), connect_schema)):
            landing, out = tmp_path / mode / "landing", tmp_path / mode / "out"
            _txnwatch("ingest", "--source", str(source), "--importance", str(importance), "--landing",
                      str(landing), "--db", pg_server_url, "--schema", sch, "--interval", "0", env=env)
            done = _txnwatch("detect", "--landing", str(landing), "--output", str(out), "--db", pg_server_url,
                             "--schema", sch, "--until-end", env=env)
            runs[mode] = (_files(out), done.stderr)
    finally:
        with connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {connect_schema} CASCADE")
    classic, connect_run = runs["classic"][0], runs["connect"][0]
    assert "Spark Connect client of sc://127.0.0.1:" in runs["connect"][1]
    assert "Spark Connect client" not in runs["classic"][1]
    assert sum(map(len, classic)) > 50 and all(len(f) == 50 for f in classic[:-1])
    assert connect_run == classic
