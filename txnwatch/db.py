"""PostgreSQL access: where the server is, one-line connection errors, the idempotent DDL."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from txnwatch.errors import TxnwatchError, first_line
from txnwatch.retry import TransientError, outage_of

DEFAULT_SCHEMA = "txnwatch"
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SQL_DIR = Path(__file__).resolve().parent / "sql"


def check_schema(schema: str) -> str:
    if not _SCHEMA_RE.match(schema):
        raise TxnwatchError(f"invalid schema name {schema!r}: use lower-case letters, digits and _")
    return schema


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def resolve_db_url(explicit: str | None = None) -> str:
    """The database to use: the explicit URL, else TXNWATCH_DB_URL, else a server on 127.0.0.1:5432,
    else an embedded server the project runs under .local/ (started on first use)."""
    if explicit:
        return explicit
    if os.environ.get("TXNWATCH_DB_URL"):
        return os.environ["TXNWATCH_DB_URL"]
    if _port_open("127.0.0.1", 5432):
        return LOCAL_SERVER_URL
    from txnwatch.embedded_pg import embedded_db_url

    return embedded_db_url()


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs: a URL (`postgresql://u:pw@h/db`, also
    `?password=`) or a key=value string (`host=h password=pw`), parsed the way libpq parses it."""
    if "://" in dsn:
        out = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", dsn)
        return re.sub(r"([?&]password=)[^&#]*", r"\1***", out, flags=re.IGNORECASE)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:  # not parsable: mask anything that looks like a password value
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn, flags=re.IGNORECASE)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


def _open(url: str, **kwargs) -> psycopg.Connection:
    """A connection, or a one-line error (retryable when the server is down, not when e.g. the password
    is wrong)."""
    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)
    except psycopg.Error as e:
        message = f"cannot connect to PostgreSQL at {redact(url)}: {first_line(e)}"
        if outage_of(e):
            raise TransientError(message, e) from None
        raise TxnwatchError(message) from None


def connect(url: str, **kwargs) -> psycopg.Connection:
    return _open(url, **kwargs)


class PgSession:
    """One autocommit connection, reopened on first use after it broke (a retried unit of work asks for
    `conn` again). `on_connect` restores what lives in the session, such as advisory locks."""

    def __init__(self, url: str, on_connect: Callable[[psycopg.Connection, bool], None] | None = None) -> None:
        self.url = url
        self.on_connect = on_connect
        self._conn: psycopg.Connection | None = None
        self._opened = 0

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            conn = _open(self.url, autocommit=True)
            try:
                if self.on_connect is not None:
                    self.on_connect(conn, self._opened > 0)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._opened += 1
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def render_sql(name: str, schema: str) -> str:
    """A file of sql/ with `{{ params.schema }}` replaced, exactly as Airflow's templating renders it."""
    text = (_SQL_DIR / name).read_text()
    return re.sub(r"\{\{\s*params\.schema\s*\}\}", check_schema(schema), text)


def init_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema and all tables if absent (idempotent, safe under concurrent callers)."""
    with conn.transaction():  # the file takes its own advisory lock, held until this commits
        conn.execute(render_sql("init_postgres_tables.sql", schema))
