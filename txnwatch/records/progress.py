"""Where X and Y are and what each chunk cost: the demo's progress line and the benchmarks' figures."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from txnwatch.core.db import check_schema
from txnwatch.records.queries import one, rows


@dataclass(frozen=True)
class Progress:
    x_last_chunk: int  # the last chunk X landed (in the landing zone Y reads, else the one X wrote to last)
    x_finished: bool
    y_last_chunk: int  # the last chunk Y committed
    detections: int

    def line(self) -> str:
        return (f"X landed chunk {self.x_last_chunk}{' (done)' if self.x_finished else ''} | "
                f"Y processed chunk {self.y_last_chunk} | {self.detections} detections")


def progress(conn: psycopg.Connection, schema: str) -> Progress:
    s = check_schema(schema)
    y = one(conn, "y_position", s)
    x = one(conn, "x_position", s, {"y_landing": y and y[2]})
    return Progress(x[1] if x else 0, bool(x and x[4]), y[0] if y else 0, one(conn, "detections_total", s)[0])


def chunk_lags(conn: psycopg.Connection, schema: str) -> list[float | None]:
    """Each chunk's lag (landed -> committed, seconds), in chunk order; None where the landing time is unknown."""
    return [r[4] for r in rows(conn, "chunk_series", check_schema(schema), {"after": 0, "limit": None})]


def chunk_costs(conn: psycopg.Connection, schema: str) -> list[tuple[int, float]]:
    """(chunk, seconds of the batch that processed it), in chunk order."""
    return [(k, float(s)) for k, s in rows(conn, "chunk_costs", check_schema(schema))]
