"""`txnwatch airflow <args>`: the Airflow CLI against the project's local Airflow configuration.

- AIRFLOW_HOME is `.local/airflow` (TXNWATCH_AIRFLOW_HOME overrides); DAGs and plugins are the repo's
  `dags/` and `plugins/`; examples are off.
- Metadata lives in PostgreSQL, in a dedicated database (`txnwatch_airflow`, created if missing) on the
  same server as txnwatch's state (TXNWATCH_DB_URL, else 127.0.0.1:5432, else the embedded server).
- The metadata database is migrated on first use (`metadata_db.ensure_migrated`, once, under a lock),
  except before commands that need none or manage it themselves (`db ...`, `version`, `config`).
- LocalExecutor with modest parallelism; the simple auth manager with one admin user whose generated
  password is kept in `<AIRFLOW_HOME>/passwords.json` (mode 600), never in code.
- Y's standing Spark: the stack (`make airflow-up`, `make demo`) starts a warm Spark Connect server on
  127.0.0.1:15002 (TXNWATCH_SPARK_PORT moves it), and TXNWATCH_SPARK_REMOTE tells Y's local runner to
  join it (`txnwatch.local.spark_server`). The server refuses a client without the home's generated
  token (`secrets.json`, passed as SPARK_CONNECT_AUTHENTICATE_TOKEN), so another user of the machine
  cannot run Spark as this one.
- Connections `postgres_default` and `aws_default` come from AIRFLOW_CONN_* variables pointing at the
  local Postgres and object store (S3 endpoint/credentials from the usual AWS_* variables, if any);
  variables already set in the environment win.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from txnwatch.core import defaults
from txnwatch.core.paths import REPO_ROOT, local_dir

ADMIN_USER = "admin"
DEFAULT_API_PORT = 8080


@dataclass(frozen=True)
class LocalAirflow:
    home: Path
    metadata_url: str  # SQLAlchemy URL of the metadata database
    state_db_url: str  # libpq URL of txnwatch's state database (postgres_default)
    api_port: int
    env: dict[str, str]
    spark_port: int = defaults.SPARK_CONNECT_PORT  # the stack's standing Spark Connect server

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def spark_remote(self) -> str:
        return f"sc://localhost:{self.spark_port}"

    @property
    def password_file(self) -> Path:
        return self.home / "passwords.json"

    def admin_password(self) -> str:
        return json.loads(self.password_file.read_text())[ADMIN_USER]

    def airflow_executable(self) -> str:
        exe = Path(sys.executable).parent / "airflow"
        return str(exe) if exe.exists() else "airflow"


# Airflow signs its JWTs with HS512, whose key should be at least 64 bytes (it warns below that).
JWT_SECRET_BYTES = 64


def _generated_keys() -> dict[str, str]:
    # token_urlsafe(n) draws n random bytes; its text is longer still (4/3 n characters).
    return {"jwt_secret": secrets.token_urlsafe(JWT_SECRET_BYTES), "api_secret_key": secrets.token_urlsafe(32),
            "spark_connect_token": secrets.token_urlsafe(32)}


def _write_private(path: Path, data: dict, replace: bool) -> dict:
    """Write `data` to `path` (mode 600) whole; without `replace`, a file made meanwhile wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    try:
        if replace:
            os.replace(tmp, path)
            return data
        try:
            os.link(tmp, path)  # atomic create-if-absent: two first runs agree on one set of secrets
            return data
        except FileExistsError:
            return json.loads(path.read_text())
    finally:
        tmp.unlink(missing_ok=True)


def _secret_file(path: Path, make, valid=lambda data: True) -> dict:
    """A JSON file of generated secrets with mode 600, created once (again if `valid` rejects it)."""
    if path.exists():
        data = json.loads(path.read_text())
        if valid(data):
            return data
        return _write_private(path, make(), replace=True)
    return _write_private(path, make(), replace=False)


def _keys_valid(keys: dict) -> bool:
    # A home made before the 64-byte rule has a shorter JWT secret: replaced (signed-in users log in again).
    # A home made before Y's standing Spark has no token for it: replaced likewise.
    return (len(keys.get("jwt_secret", "").encode()) >= JWT_SECRET_BYTES and bool(keys.get("api_secret_key"))
            and bool(keys.get("spark_connect_token")))


def _with_database(url: str, database: str) -> str:
    p = urlparse(url)
    return p._replace(path=f"/{database}").geturl()


def ensure_database(server_url: str, database: str) -> None:
    """Create `database` on the server of `server_url` if it does not exist."""
    from txnwatch.core.db import connect

    with connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return
        try:
            conn.execute(f'CREATE DATABASE "{database}"')
        except Exception as e:  # created concurrently by another process
            if "already exists" not in str(e):
                raise


def _postgres_conn_json(url: str) -> str:
    p = urlparse(url)
    conn = {"conn_type": "postgres", "host": p.hostname or "127.0.0.1", "port": p.port or 5432,
            "login": unquote(p.username or "postgres"),
            "schema": (p.path or "/postgres").lstrip("/") or "postgres"}
    if p.password:
        conn["password"] = unquote(p.password)
    return json.dumps(conn)


def _aws_conn_json(environ: dict[str, str]) -> str:
    conn: dict = {"conn_type": "aws"}
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        conn["login"] = environ["AWS_ACCESS_KEY_ID"]
        conn["password"] = environ["AWS_SECRET_ACCESS_KEY"]
    extra = {"region_name": environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    if environ.get("AWS_ENDPOINT_URL"):
        extra["endpoint_url"] = environ["AWS_ENDPOINT_URL"]
    conn["extra"] = extra
    return json.dumps(conn)


def local_airflow(home: str | Path | None = None, api_port: int | None = None, spark_port: int | None = None,
                  metadata_db: str | None = None, state_db_url: str | None = None,
                  environ: dict[str, str] | None = None, create: bool = True) -> LocalAirflow:
    """The local Airflow configuration; with `create`, its folders, secrets and metadata database."""
    from txnwatch.core.db import resolve_db_url

    base = dict(os.environ if environ is None else environ)
    local = Path(base["TXNWATCH_LOCAL_DIR"]).expanduser() if base.get("TXNWATCH_LOCAL_DIR") else local_dir(False)
    home = Path(home or base.get("TXNWATCH_AIRFLOW_HOME") or local / "airflow").resolve()
    api_port = int(api_port or base.get("TXNWATCH_AIRFLOW_PORT") or DEFAULT_API_PORT)
    spark_port = int(spark_port or base.get("TXNWATCH_SPARK_PORT") or defaults.SPARK_CONNECT_PORT)
    metadata_db = metadata_db or base.get("TXNWATCH_AIRFLOW_DB") or "txnwatch_airflow"
    state_url = state_db_url or resolve_db_url(base.get("TXNWATCH_DB_URL"))
    server = urlparse(state_url)
    metadata_url = _with_database(state_url, metadata_db).replace(
        f"{server.scheme}://", "postgresql+psycopg2://", 1)

    if create:
        home.mkdir(parents=True, exist_ok=True)
        ensure_database(state_url, metadata_db)
    keys = _secret_file(home / "secrets.json", _generated_keys, _keys_valid) if create \
        else {"jwt_secret": "", "api_secret_key": "", "spark_connect_token": ""}
    if create:
        _secret_file(home / "passwords.json", lambda: {ADMIN_USER: secrets.token_urlsafe(12)})

    env = dict(base)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__CAPACITY": "50",
        # Task processes talk to the API server; on a busy two-core machine (Spark, X and the services
        # together) its answers can take longer than the 5 s default, which failed tasks before they ran.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": base.get("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "30"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": base.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "SPARK_LOCAL_IP": base.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "TXNWATCH_DB_URL": state_url,
        # `localhost`: pyspark sends the token without TLS only to localhost (gRPC local credentials).
        "TXNWATCH_SPARK_REMOTE": f"sc://localhost:{spark_port}",
        # The server requires it and Y's clients send it (pyspark reads this variable on both sides).
        "SPARK_CONNECT_AUTHENTICATE_TOKEN": keys["spark_connect_token"],
    })
    env.setdefault("AIRFLOW_CONN_POSTGRES_DEFAULT", _postgres_conn_json(state_url))
    env.setdefault("AIRFLOW_CONN_AWS_DEFAULT", _aws_conn_json(base))
    # The venv's bin first, so Airflow's task processes find `txnwatch`, `spark-submit`, `airflow`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    return LocalAirflow(home=home, metadata_url=metadata_url, state_db_url=state_url, api_port=api_port,
                        env=env, spark_port=spark_port)


# Commands that need no metadata database (or manage it themselves): no migration before them.
NO_MIGRATION = {"db", "version", "config", "cheat-sheet", "-h", "--help"}


def command(args) -> int:
    argv = list(getattr(args, "airflow_args", None) or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    la = local_airflow()
    if argv and argv[0] not in NO_MIGRATION:
        from txnwatch.local.metadata_db import ensure_migrated

        ensure_migrated(la, say=lambda msg: print(f"txnwatch airflow: {msg}", file=sys.stderr, flush=True))
    exe = la.airflow_executable()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(exe, [exe, *argv], la.env)  # replaces this process: signals reach Airflow directly
    return 0  # pragma: no cover
