"""PostgreSQL access: where the server is, one-line connection errors, the idempotent DDL."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.retry import Unreachable, is_transient

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


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
    try:
        from txnwatch.core.embedded_pg import embedded_db_url
    except ImportError:  # the Databricks wheel leaves the developer's embedded server out
        raise TxnwatchError("no database: give --db or TXNWATCH_DB_URL (or --db-secret on Databricks)") from None
    return embedded_db_url()


_URL_PASSWORD = re.compile(r"://([^:/@\s]*):[^\s/]*@")
# password=... in a key=value DSN (quoted or not) and in a URL's query string.
_KV_PASSWORD = re.compile(r"""(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)""", re.IGNORECASE)
_secrets: set[str] = set()


def redact(dsn: str) -> str:
    """The DSN (URL or key=value form) without its password, for messages and logs."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"://\1:***@", dsn))


def remember_secret(dsn: str) -> None:
    """Note the DSN's password so `scrub` removes it from any text (an error quoting the DSN, a log line)."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:  # unparsable: redact() still covers the recognisable forms
        return
    if password:
        _secrets.add(str(password))


def scrub(text: str) -> str:
    """`text` with every remembered password and any recognisable DSN password masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return redact(text)


class ScrubFilter(logging.Filter):
    """Masks passwords in every record a handler emits (installed by the CLI on its handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A connection with TCP keepalives (a silently dead peer is noticed in seconds, not hours).

    A failure a retry can cure (refused, timed out, server starting or shutting down) raises
    `Unreachable`; anything else (bad password, no such database) a plain TxnwatchError.
    """
    remember_secret(url)
    try:
        return psycopg.connect(url, connect_timeout=5, keepalives=1, keepalives_idle=10, keepalives_interval=3,
                               keepalives_count=3, **kwargs)
    except psycopg.Error as e:
        message = f"cannot connect to PostgreSQL at {redact(url)}: {scrub(first_line(e))}"
        if is_transient(e):
            raise Unreachable("PostgreSQL", message) from None
        raise TxnwatchError(message) from None


def render_sql(name: str, schema: str) -> str:
    """A file of sql/ with `{{ params.schema }}` replaced, exactly as Airflow's templating renders it."""
    text = (_SQL_DIR / name).read_text()
    return re.sub(r"\{\{\s*params\.schema\s*\}\}", check_schema(schema), text)


def init_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema and all tables if absent (idempotent, safe under concurrent callers)."""
    with conn.transaction():  # the file takes its own advisory lock, held until this commits
        conn.execute(render_sql("init_postgres_tables.sql", schema))


class Link:
    """The one connection of a long-running job, replaced after an outage.

    `conn` reconnects when the connection is missing, closed or broken; `setup` runs on every new
    connection (session-level state such as advisory locks is gone with the old one).
    """

    def __init__(self, url: str, setup: Callable[[psycopg.Connection], None] | None = None, **kwargs) -> None:
        self.url, self.setup, self.kwargs = url, setup, kwargs
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.drop()
            conn = connect(self.url, **self.kwargs)
            try:
                if self.setup is not None:
                    self.setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def reconnect(self) -> psycopg.Connection:
        """After an outage: a new connection (and whatever `setup` takes, such as a job lock)."""
        self.drop()
        return self.conn

    def drop(self) -> None:
        """Forget the connection (closing it quietly): the next `conn` makes a new one."""
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    close = drop


class JobLock:
    """One writer per stream: a session advisory lock on `key`, taken on every new connection of a `Link`
    (pass it as the link's `setup`); it goes with the session, so a killed job never leaves it behind.

    The first take refuses at once when another session holds the lock (TxnwatchError `busy`). A re-take
    after an outage most likely finds our own cut session still holding it, not yet reaped by the server:
    that is reported as an outage (Unreachable), which the caller's retry policy rides out.
    """

    def __init__(self, key: str, busy: str, name: str) -> None:
        self.key, self.busy, self.name = key, busy, name
        self.taken = False

    def __call__(self, conn: psycopg.Connection) -> None:
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self.key,)).fetchone()[0]
        if not got:
            if self.taken:
                raise Unreachable("PostgreSQL", f"{self.name} is still held (by the session the outage cut?)")
            raise TxnwatchError(self.busy)
        self.taken = True
