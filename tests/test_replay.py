"""A second replay through the DAGs: a finished stream is refused with what to change; `start_over`
clears the schema, landing zone and output; a stopped stream is not refused (it resumes)."""

from __future__ import annotations

import pytest

from txnwatch.airflow.replay import finished_detection, finished_landing, start_over
from txnwatch.core.db import connect
from txnwatch.core.storage import open_store
from txnwatch.ingest.job import run_ingest


@pytest.fixture
def landed(tmp_path, pg_server_url, schema, sample_csv, importance):
    """The real sample landed by X in three chunks, to the end (`_END.json`)."""
    landing = open_store(str(tmp_path / "landing"))
    summary = run_ingest(str(sample_csv), str(importance), landing.url, pg_server_url, schema,
                         rows_per_chunk=4_000, interval=0)
    assert summary.finished
    return landing


def test_a_finished_landing_zone_is_refused_with_what_to_change(landed, pg_server_url, schema):
    with connect(pg_server_url, autocommit=True) as conn:
        reason = finished_landing(conn, schema, landed.url)
        # Y has yet to process it: for Y this finished landing zone is a backlog, not a finished replay.
        assert finished_detection(conn, schema) is None
    assert f"landing zone {landed.url} already holds a finished replay" in reason and "(3 chunks)" in reason
    assert "start_over" in reason and "another landing zone, output and schema" in reason
    assert "\n" not in reason


def test_a_stream_that_was_stopped_is_not_refused(tmp_path, pg_server_url, schema):
    from txnwatch.core.db import init_schema

    landing = open_store(str(tmp_path / "landing"))
    with connect(pg_server_url, autocommit=True) as conn:
        assert finished_detection(conn, schema) is None and finished_landing(conn, schema, landing.url) is None
        init_schema(conn, schema)
        conn.execute(f"INSERT INTO {schema}.x_checkpoint (landing, source, source_sha256, rows_per_chunk, "
                     "last_chunk) VALUES (%s, 's', 'h', 4000, 1)", (landing.url,))
        conn.execute(f"INSERT INTO {schema}.y_checkpoint (landing, output, last_chunk) VALUES (%s, 'o', 1)",
                     (landing.url,))
        # 1 chunk of 3 landed and processed: a restart resumes, for X and for Y
        assert finished_landing(conn, schema, landing.url) is None and finished_detection(conn, schema) is None


def test_a_schema_where_y_finished_is_refused_with_what_to_change(tmp_path, pg_server_url, schema):
    from txnwatch.core.db import init_schema

    with connect(pg_server_url, autocommit=True) as conn:
        init_schema(conn, schema)
        conn.execute(f"INSERT INTO {schema}.y_checkpoint (landing, output, last_chunk, finished) "
                     "VALUES ('/l', '/o', 60, true)")
        reason = finished_detection(conn, schema)
    assert reason.startswith(f"schema {schema} already finished a replay: Mechanism Y processed all 60 chunks "
                             "of /l into /o; a new replay needs another landing zone, output and schema")


def test_start_over_clears_the_schema_the_landing_zone_and_the_output(landed, tmp_path, pg_server_url, schema):
    output = open_store(str(tmp_path / "output"))
    output.put("detections_00000001.jsonl", b"{}\n")
    with connect(pg_server_url, autocommit=True) as conn:
        lines = start_over(conn, schema, [landed, output])
        assert conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone()[0] is None
        assert finished_landing(conn, schema, landed.url) is None
    assert landed.list() == [] and output.list() == []
    assert lines[0] == f"start over: dropped schema {schema}" and "deleted 1 objects" in lines[2]
