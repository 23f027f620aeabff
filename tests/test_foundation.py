"""The shared layers every mechanism stands on: storage, database DDL, CLI errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from txnwatch.core.db import connect, init_schema, render_sql
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.storage import open_store


def test_local_store_put_is_atomic_and_listable(tmp_path):
    store = open_store(str(tmp_path / "landing"))
    store.put("chunk_00000001/transactions.csv", b"a,b\n")
    assert store.get("chunk_00000001/transactions.csv") == b"a,b\n"
    assert store.list() == ["chunk_00000001/transactions.csv"]
    assert not list((tmp_path / "landing" / "chunk_00000001").glob(".*"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_local_store_files_get_the_mode_the_umask_says(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        open_store(str(tmp_path / "out")).put("detections_00000001.jsonl", b"{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "detections_00000001.jsonl").stat().st_mode & 0o777 == mode


def test_file_url_is_a_local_store(tmp_path):
    store = open_store(f"file://{tmp_path}")
    store.put("x.txt", b"1")
    assert (tmp_path / "x.txt").read_bytes() == b"1"


def test_s3_store_round_trip(s3_bucket):
    store = open_store(f"s3://{s3_bucket}/landing")
    store.put("chunk_00000001/transactions.csv", b"data")
    assert store.exists("chunk_00000001/transactions.csv")
    assert not store.exists("chunk_00000002/transactions.csv")
    assert store.list("chunk_") == ["chunk_00000001/transactions.csv"]
    assert store.get("chunk_00000001/transactions.csv") == b"data"


def test_missing_bucket_is_one_clear_error(s3_endpoint):
    with pytest.raises(TxnwatchError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x")


def test_ddl_is_idempotent(db, schema):
    init_schema(db, schema)  # second run changes nothing and does not fail
    tables = {r[0] for r in db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
    assert {"merchant_txn_count", "customer_txn_stats", "detected_patterns", "x_checkpoint",
            "y_checkpoint"} <= tables


def test_concurrent_initialisers_of_a_new_schema_do_not_collide(pg_server_url):
    """Both DAGs create the tables at the same moment; the DDL's advisory lock serialises them."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(5)]

    def init(name: str) -> None:
        with connect(pg_server_url, autocommit=True) as conn:
            init_schema(conn, name)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for name in names:
                list(pool.map(init, [name] * 4))  # raises if any initialiser failed
    finally:
        with connect(pg_server_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_without_a_server_an_embedded_one_is_started_under_the_local_dir(tmp_path, monkeypatch):
    from txnwatch.core.embedded_pg import embedded_db_url


    monkeypatch.setenv("TXNWATCH_LOCAL_DIR", str(tmp_path))
    try:
        url = embedded_db_url()
        with connect(url, autocommit=True) as conn:
            init_schema(conn, "embedded")
            assert conn.execute("SELECT count(*) FROM embedded.detected_patterns").fetchone() == (0,)
        assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    finally:  # the project leaves it running for the next command; a test must not
        pid_file = tmp_path / "pgdata" / "postmaster.pid"
        if pid_file.exists():  # runs as another user when we are root: signal it (fast shutdown)
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="embedded server to stop")


def test_one_line_errors_keep_the_first_line_and_name_an_empty_message():
    assert first_line(RuntimeError("  boom\n  detail\n")) == "boom"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(ValueError("x" * 500), limit=300) == "x" * 300


def test_schema_name_is_validated():
    with pytest.raises(TxnwatchError, match="invalid schema name"):
        render_sql("init_postgres_tables.sql", "x; DROP TABLE y")


def test_unreachable_postgres_is_one_clear_error():
    with pytest.raises(TxnwatchError, match="cannot connect to PostgreSQL"):
        connect("postgresql://nobody:secret@127.0.0.1:1/none")


def test_cli_reports_errors_in_one_line_without_password():
    proc = subprocess.run(
        [sys.executable, "-m", "txnwatch", "report", "--db", "postgresql://u:hunter2@127.0.0.1:1/x"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "cannot connect to PostgreSQL" in proc.stderr and "hunter2" not in proc.stderr


def test_the_cli_offers_only_the_commands_whose_modules_are_installed(monkeypatch, capsys):
    """The Databricks wheel leaves the Airflow and local tooling out: its CLI must not offer them."""
    from txnwatch import cli

    assert all(cli.available(c) for c in cli.COMMANDS)  # the checkout holds every room
    monkeypatch.setitem(cli.COMMANDS, "airflow", "txnwatch.no_such_room.airflow_home")
    monkeypatch.setitem(cli.COMMANDS, "databricks", "txnwatch.databricks.no_such_module")
    monkeypatch.setitem(cli.COMMANDS, "spark-server", "txnwatch.no_such_room.spark_server")
    parser = cli.build_parser()
    usage = parser.format_usage()
    assert "{ingest,detect,generate,report}" in usage
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["airflow", "dags", "list"])
    assert e.value.code == 2 and "invalid choice: 'airflow'" in capsys.readouterr().err
    assert parser.parse_args(["report", "--json"]).json
