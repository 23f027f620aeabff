"""Shared fixtures: a real PostgreSQL schema per test, a real S3 endpoint (moto_server), one SparkSession."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_CSV, free_port, wait_for

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

# .venv-dbr (`make test-dbr`) stands for a Databricks cluster's Python: no Airflow, no databricks-sdk, no
# Playwright. The Airflow, Databricks-orchestration and browser tests need them, so they are not collected there.
collect_ignore: list[str] = []
if importlib.util.find_spec("airflow") is None:
    collect_ignore += ["test_airflow_dags.py", "test_airflow_e2e.py", "test_airflow_local.py", "test_compose.py",
                       "test_dag_integrity.py", "test_databricks.py", "test_rest_api_client.py"]
if importlib.util.find_spec("playwright") is None:
    collect_ignore += ["test_browser_ui.py", "test_live_view_browser.py"]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    from txnwatch.core.db import resolve_db_url

    return resolve_db_url(os.environ.get("TXNWATCH_TEST_DB_URL"))


@pytest.fixture
def schema(pg_server_url) -> str:
    """A fresh schema name for one test, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def db(pg_server_url, schema):
    """A connection with the txnwatch tables created in the test's own schema."""
    from txnwatch.core.db import connect, init_schema

    conn = connect(pg_server_url, autocommit=True)
    init_schema(conn, schema)
    yield conn
    conn.close()


@pytest.fixture
def local_dir(tmp_path, monkeypatch) -> Path:
    """The project's `.local` (downloaded sources are cached there) inside the test's own folder."""
    monkeypatch.setenv("TXNWATCH_LOCAL_DIR", str(tmp_path / "local"))
    return tmp_path / "local"


@pytest.fixture
def importance(tmp_path) -> Path:
    """A small importance file in the BankSim network layout."""
    from tests.x_data import write_importance

    return write_importance(tmp_path / "importance.csv")


@pytest.fixture
def ingest(pg_server_url, schema, db, importance, local_dir):
    """Mechanism X in-process, flat out (interval 0) unless told otherwise, in the test's schema."""
    from txnwatch.ingest.job import run_ingest

    def run(source, landing, **kw):
        kw.setdefault("interval", 0)
        return run_ingest(str(source), str(kw.pop("importance", importance)), str(landing), pg_server_url,
                          schema, **kw)
    return run


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """A real S3 HTTP endpoint (moto_server) on a free port; AWS_* variables point at it."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in
             ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return proc.poll() is not None

    wait_for(up, timeout=30, what="moto_server")
    assert proc.poll() is None, log.read_text()
    yield url
    proc.terminate()
    proc.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    """A fresh, empty bucket on the S3 endpoint."""
    import boto3

    name = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test process, configured as the detection job configures it."""
    from txnwatch.detect.spark_session import get_spark, is_connect

    session = get_spark(app_name="txnwatch-tests")
    # The Connect variant of the suite (SPARK_REMOTE set, see the Makefile) must really run as a client.
    assert is_connect(session) == bool(os.environ.get("SPARK_REMOTE")), type(session)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    assert SAMPLE_CSV.exists(), f"missing {SAMPLE_CSV}"
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def browser_type_launch_args():
    """pytest-playwright launches Debian's chromium: browser downloads cannot work here."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Debian's chromium is missing: `apt-get install -y chromium` (.ci/run installs it)")
    return {"executable_path": executable, "headless": True,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run"]}


@pytest.fixture
def pg_proxy(pg_server_url):
    """A FaultProxy in front of the test PostgreSQL server; `pg_proxy.url` is the DSN through it."""
    from urllib.parse import urlparse

    from tests.fault_proxy import FaultProxy

    target = urlparse(pg_server_url)
    proxy = FaultProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxy.url = target._replace(netloc=f"{target.username or 'postgres'}@127.0.0.1:{proxy.port}").geturl()
    yield proxy
    proxy.close()


@pytest.fixture
def s3_proxy(s3_endpoint):
    """A FaultProxy in front of the moto S3 server; `s3_proxy.url` is the endpoint through it."""
    from urllib.parse import urlparse

    from tests.fault_proxy import FaultProxy

    target = urlparse(s3_endpoint)
    proxy = FaultProxy(target.hostname, target.port)
    proxy.url = f"http://127.0.0.1:{proxy.port}"
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """Pages of the browser tests: a desktop-sized window, and the clipboard a user pastes JSON from."""
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1100},
            "permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture
def ui_page(page):
    """pytest-playwright's page (a fresh browser context per test) with bounds for a busy machine; screenshots
    go to browser_support.SHOTS."""
    from playwright.sync_api import expect

    from tests.browser_support import SHOTS, UI_TIMEOUT_MS

    page.set_default_timeout(UI_TIMEOUT_MS)
    page.set_default_navigation_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)  # Playwright's awaiting assertions have their own 5 s default
    SHOTS.mkdir(parents=True, exist_ok=True)
    return page
