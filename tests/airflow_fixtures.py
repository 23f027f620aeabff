"""Pytest fixtures of the Airflow tests (imported by the test modules that need them)."""

from __future__ import annotations

import json

import pytest

from tests.airflow_support import (
    ARTIFACTS,
    CLUSTERS,
    DATA_VOLUME,
    POLICIES,
    SECRET_PASSWORD,
    SMALL_THRESHOLDS,
    STANDIN_TOKEN,
    drop_metadata_db,
    generate,
    session_airflow,
    standin_client,
)
from tests.helpers import free_port


@pytest.fixture(scope="session")
def airflow_local(tmp_path_factory, pg_server_url):
    """One local Airflow (home + fresh migrated metadata database) for the whole test session."""
    home = tmp_path_factory.getbasetemp() / "airflow_home"
    home.mkdir(exist_ok=True)
    la = session_airflow(str(home), pg_server_url)
    yield la
    drop_metadata_db(la)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A small generated BankSim-shaped set (40,000 rows) where all three rules fire with SMALL_THRESHOLDS."""
    out = tmp_path_factory.getbasetemp() / "small_dataset"
    if not (out / "done").exists():
        out.mkdir(exist_ok=True)
        tx, imp = generate(out, rows=40_000)
        (out / "done").write_text(json.dumps([str(tx), str(imp)]))
    tx, imp = json.loads((out / "done").read_text())
    from txnwatch.generate import scaled_thresholds

    return {"source": tx, "importance": imp, "thresholds": {**SMALL_THRESHOLDS, **scaled_thresholds(40_000)}}


def password_url(server_url: str) -> str:
    """The server URL with a password added (ignored by trust auth)."""
    from urllib.parse import urlparse

    p = urlparse(server_url)
    user = p.username or "postgres"
    return p._replace(netloc=f"{user}:{SECRET_PASSWORD}@{p.hostname}:{p.port or 5432}").geturl()


@pytest.fixture
def databricks_standin(tmp_path, pg_server_url):
    """The workspace stand-in (Jobs, Files, Workspace APIs) on a free port, with the volume ARTIFACTS;
    yields (standin, env for Airflow processes)."""
    from tests.databricks_standin import DatabricksStandin

    standin = DatabricksStandin(token=STANDIN_TOKEN, secrets={"txnwatch/db_url": password_url(pg_server_url)},
                                log_dir=tmp_path, volumes={ARTIFACTS, DATA_VOLUME}, policies=POLICIES,
                                clusters=CLUSTERS)
    port = standin.start(free_port())
    env = {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps({"conn_type": "databricks", "host": "127.0.0.1",
                                                       "port": port, "schema": "http",
                                                       "password": STANDIN_TOKEN}),
        "TXNWATCH_DATABRICKS_POLL_S": "1",
        "TXNWATCH_DATABRICKS_ARTIFACTS": ARTIFACTS,
        "TXNWATCH_DATABRICKS_SECRET_SCOPE": "txnwatch",
        "TXNWATCH_DATABRICKS_DB_URL_SECRET": "db_url",
    }
    yield standin, env
    standin.stop()


@pytest.fixture(scope="session")
def release_wheel(tmp_path_factory):
    """(release, wheel) of the code under test, built once per session."""
    from txnwatch.databricks.deploy import build_wheel
    from txnwatch.databricks.release import current_release

    release = current_release()
    return release, build_wheel(release, tmp_path_factory.mktemp("dist"))


@pytest.fixture
def deployed_release(databricks_standin, release_wheel):
    """The release of this code deployed to the stand-in's volume, as `txnwatch databricks deploy` does."""
    from txnwatch.databricks.deploy import deploy_release

    release, wheel = release_wheel
    deploy_release(standin_client(databricks_standin[0]), ARTIFACTS, release, wheel)
    return release
