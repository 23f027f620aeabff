"""The read side's SQL: the named blocks of `sql/records.sql`, run against one schema.

The schema name is validated (`txnwatch.core.db.check_schema`, the pattern of the DAGs' params form) and
only ever passed as an identifier (`psycopg.sql.Identifier`).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from txnwatch.detect.shapes import PATTERNS

SQL_FILE = Path(__file__).resolve().parents[1] / "sql" / "records.sql"


@cache
def queries() -> dict[str, str]:
    """The named blocks of sql/records.sql."""
    text = SQL_FILE.read_text()
    parts = re.split(r"^-- name: (\w+)\s*$", text, flags=re.M)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def query(name: str, schema: str) -> sql.Composed:
    return sql.SQL(queries()[name]).format(schema=sql.Identifier(schema))


def one(conn: psycopg.Connection, name: str, schema: str, params: dict[str, Any] | None = None) -> tuple | None:
    return conn.execute(query(name, schema), params).fetchone()


def rows(conn: psycopg.Connection, name: str, schema: str, params: dict[str, Any] | None = None) -> list[tuple]:
    return conn.execute(query(name, schema), params).fetchall()


def detections_per_pattern(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """Detections so far per patternId, every pattern present (0 when none)."""
    counts = dict.fromkeys(PATTERNS, 0)
    counts.update(dict(rows(conn, "detections_per_pattern", schema)))
    return counts
