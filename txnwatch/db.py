"""PostgreSQL access: where the server is, one-line connection errors, the idempotent DDL."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import psycopg

from txnwatch.errors import TxnwatchError, first_line

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


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def connect(url: str, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as e:
        raise TxnwatchError(f"cannot connect to PostgreSQL at {redact(url)}: {first_line(e)}") from None


def render_sql(name: str, schema: str) -> str:
    """A file of sql/ with `{{ params.schema }}` replaced, exactly as Airflow's templating renders it."""
    text = (_SQL_DIR / name).read_text()
    return re.sub(r"\{\{\s*params\.schema\s*\}\}", check_schema(schema), text)


def init_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema and all tables if absent (idempotent, safe under concurrent callers)."""
    with conn.transaction():  # the file takes its own advisory lock, held until this commits
        conn.execute(render_sql("init_postgres_tables.sql", schema))
