"""`txnwatch airflow`: the project's local Airflow configuration."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.airflow_support import ROOT
from txnwatch.local.airflow_home import local_airflow


def test_airflow_local_configuration(tmp_path, pg_server_url):
    la = local_airflow(home=tmp_path / "af", metadata_db="txnwatch_airflow_cfgtest",
                       state_db_url=pg_server_url, api_port=18080,
                       environ={"PATH": "/usr/bin", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    env = la.env
    assert env["AIRFLOW_HOME"] == str(tmp_path / "af")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(ROOT / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/txnwatch_airflow_cfgtest")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 8
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    pg = json.loads(env["AIRFLOW_CONN_POSTGRES_DEFAULT"])
    assert pg["conn_type"] == "postgres" and pg["host"] == "127.0.0.1"
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["extra"]["endpoint_url"] == "http://127.0.0.1:9"
    # The admin password is generated into a private file, not in code or in the environment.
    password = la.admin_password()
    assert len(password) >= 12 and password not in json.dumps(env)
    assert stat.S_IMODE(la.password_file.stat().st_mode) == 0o600
    assert local_airflow(home=tmp_path / "af", metadata_db="txnwatch_airflow_cfgtest",
                         state_db_url=pg_server_url).admin_password() == password  # stable
    from txnwatch.core.db import connect

    with connect(pg_server_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'txnwatch_airflow_cfgtest'").fetchone()
        conn.execute('DROP DATABASE IF EXISTS "txnwatch_airflow_cfgtest"')


def test_airflow_local_connections_from_environment_win(tmp_path, pg_server_url):
    la = local_airflow(home=tmp_path / "af", create=False, state_db_url=pg_server_url,
                       environ={"AIRFLOW_CONN_POSTGRES_DEFAULT": "postgresql://u@h:1/d"})
    assert la.env["AIRFLOW_CONN_POSTGRES_DEFAULT"] == "postgresql://u@h:1/d"


def test_txnwatch_airflow_cli_runs_airflow(tmp_path, pg_server_url):
    exe = Path(sys.executable).parent / "txnwatch"
    env = {"PATH": "/usr/bin:/bin", "TXNWATCH_AIRFLOW_HOME": str(tmp_path / "af"),
           "TXNWATCH_AIRFLOW_DB": "txnwatch_airflow_clitest", "TXNWATCH_DB_URL": pg_server_url}
    out = subprocess.run([str(exe), "airflow", "version"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("3.3.")
    out = subprocess.run([str(exe), "airflow", "config", "get-value", "core", "dags_folder"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == str(ROOT / "dags")
    from txnwatch.core.db import connect

    with connect(pg_server_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "txnwatch_airflow_clitest"')


def test_jwt_secret_is_at_least_64_bytes(tmp_path, pg_server_url):
    la = local_airflow(home=tmp_path / "af", metadata_db="txnwatch_airflow_jwttest", state_db_url=pg_server_url)
    try:
        assert len(la.env["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= 64
    finally:
        _drop(pg_server_url, "txnwatch_airflow_jwttest")


def test_a_short_jwt_secret_from_an_older_home_is_replaced(tmp_path, pg_server_url):
    home = tmp_path / "af"
    home.mkdir()
    (home / "secrets.json").write_text(json.dumps({"jwt_secret": "x" * 43, "api_secret_key": "k" * 43}))
    la = local_airflow(home=home, create=False, state_db_url=pg_server_url)
    assert la.env["AIRFLOW__API_AUTH__JWT_SECRET"] == ""  # create=False reads nothing
    la = local_airflow(home=home, metadata_db="txnwatch_airflow_jwttest2", state_db_url=pg_server_url)
    try:
        secret = la.env["AIRFLOW__API_AUTH__JWT_SECRET"]
        assert len(secret.encode()) >= 64
        assert json.loads((home / "secrets.json").read_text())["jwt_secret"] == secret
        assert stat.S_IMODE((home / "secrets.json").stat().st_mode) == 0o600
    finally:
        _drop(pg_server_url, "txnwatch_airflow_jwttest2")


def _drop(server_url: str, database: str) -> None:
    from txnwatch.core.db import connect

    with connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_migration_head_is_the_installed_airflows_newest_revision():
    """Read from the migration scripts; it must be the revision Airflow records for its own version."""
    from airflow import __version__
    from airflow.utils.db import _REVISION_HEADS_MAP

    from txnwatch.local.metadata_db import migration_head

    newest_known = max(_REVISION_HEADS_MAP, key=lambda v: tuple(int(x) for x in v.split(".")))
    assert __version__.startswith(newest_known.rsplit(".", 1)[0])
    assert migration_head() == _REVISION_HEADS_MAP[newest_known]


def test_first_cli_command_on_a_fresh_checkout_migrates_once_under_a_lock(tmp_path, pg_server_url):
    """Two `txnwatch airflow dags list` started together on a never-migrated database: both succeed, and
    exactly one of them migrated it; a third command finds nothing to do."""
    from txnwatch.local.metadata_db import current_revision, migration_head

    exe = Path(sys.executable).parent / "txnwatch"
    db = "txnwatch_airflow_firstrun"
    _drop(pg_server_url, db)
    env = {"PATH": "/usr/bin:/bin", "TXNWATCH_AIRFLOW_HOME": str(tmp_path / "af"), "TXNWATCH_AIRFLOW_DB": db,
           "TXNWATCH_DB_URL": pg_server_url, "SPARK_LOCAL_IP": "127.0.0.1"}
    try:
        procs = [subprocess.Popen([str(exe), "airflow", "dags", "list", "-o", "plain"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err[-3000:]
            assert "mechanism_x_ingest" in out and "mechanism_y_detect" in out
            assert "Database migration required" not in out + err
        assert sum("migrating it (once)" in err for _, err in outs) == 1
        la = local_airflow(home=tmp_path / "af", metadata_db=db, state_db_url=pg_server_url)
        assert current_revision(la.metadata_url) == migration_head()
        again = subprocess.run([str(exe), "airflow", "dags", "list", "-o", "plain"], env=env, capture_output=True,
                               text=True, timeout=300)
        assert again.returncode == 0 and "migrating" not in again.stderr
    finally:
        _drop(pg_server_url, db)
