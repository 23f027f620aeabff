"""A database password never reaches stderr or a log line, whichever DSN form carries it and whichever
error path reports it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.x_data import write_banksim, write_importance
from txnwatch.core.db import ScrubFilter, redact, remember_secret, scrub

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pa55-w0rd_x"


def dsns(port: int, database: str = "db") -> dict[str, str]:
    return {
        "url": f"postgresql://someone:{PASSWORD}@127.0.0.1:{port}/{database}",
        "key=value": f"host=127.0.0.1 port={port} user=someone password={PASSWORD} dbname={database}",
        "key=value quoted": f"host=127.0.0.1 port={port} password='{PASSWORD}' dbname={database}",
        "query parameter": f"postgresql://127.0.0.1:{port}/{database}?user=someone&password={PASSWORD}",
        "malformed key=value": f"host=127.0.0.1 port={port} password={PASSWORD} dbname",
    }


def test_redact_masks_the_password_of_every_dsn_form():
    for form, dsn in dsns(5432).items():
        assert PASSWORD not in redact(dsn), form


def test_a_remembered_password_is_masked_in_any_text_and_log_record(caplog):
    remember_secret(f"host=h password={PASSWORD}")
    assert scrub(f"FATAL: something quoted {PASSWORD} back") == "FATAL: something quoted *** back"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "library said %s", (PASSWORD,), None)
    ScrubFilter().filter(record)
    assert PASSWORD not in record.getMessage()


def _commands(tmp_path: Path, dsn: str) -> dict[str, list[str]]:
    src, imp = write_banksim(tmp_path / "tx.csv", 3), write_importance(tmp_path / "imp.csv")
    db = ["--db", dsn, "--schema", "s"]
    return {
        "ingest": ["ingest", "--source", str(src), "--importance", str(imp), "--landing", str(tmp_path / "l"), *db,
                   "--retry-seconds", "1"],
        "detect": ["detect", "--landing", str(tmp_path / "l"), "--output", str(tmp_path / "o"), *db,
                   "--retry-seconds", "1"],
        "report": ["report", *db],
    }


@pytest.mark.parametrize("form", list(dsns(1)))
def test_no_error_path_prints_the_password(form, tmp_path, pg_server_url):
    """Refused (retried up to the bound), and refused by the server (no such database)."""
    from urllib.parse import urlparse

    env = {**os.environ, "TXNWATCH_LOCAL_DIR": str(tmp_path / "local")}
    server_port = urlparse(pg_server_url).port or 5432
    for dsn in (dsns(free_port())[form], dsns(server_port, "no_such_database")[form]):
        for name, args in _commands(tmp_path, dsn).items():
            proc = subprocess.run([sys.executable, "-m", "txnwatch", *args], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 2, f"{name}: {proc.stderr[-1500:]}"
            assert f"txnwatch {name}: error:" in proc.stderr.splitlines()[-1]
            assert PASSWORD not in proc.stderr + proc.stdout, f"{name} via {form}: {proc.stderr}"
            assert "Traceback" not in proc.stderr
