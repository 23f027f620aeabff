"""`txnwatch airflow`: the project's local Airflow configuration."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from airflow_support import ROOT

from txnwatch.airflow_local import local_airflow


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
    from txnwatch.db import connect

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
    from txnwatch.db import connect

    with connect(pg_server_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "txnwatch_airflow_clitest"')
