"""The live view's data and its HTTP endpoints, against real PostgreSQL state and a real Airflow API server
with the txnwatch plugin mounted (authentication by the API server's own token validation)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest

from tests.airflow_support import SECRET_PASSWORD
from tests.helpers import ROOT
from txnwatch.core.errors import TxnwatchError
from txnwatch.records.snapshot import SchemaNotFound, snapshot

pytest_plugins = ["tests.airflow_fixtures", "tests.live_view_support"]

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
LAGS = [0.2, 0.4, 0.6, 0.8, 1.5]
# (pattern, customer, merchant, chunk): detections in seq order.
DETECTIONS = [("PatId2", "C1", "M1", 2), ("PatId3", "", "M2", 2), ("PatId2", "C2", "M1", 4),
              ("PatId1", "C3", "M3", 5)]
ACTIONS = {"PatId1": "UPGRADE", "PatId2": "CHILD", "PatId3": "DEI-NEEDED"}


def seed(conn, schema: str, *, x_chunks: int = 7, heartbeat_age_s: float | None = 0.0, ready: bool = True,
         finished: bool = False) -> None:
    """State as X and Y leave it: X landed `x_chunks` chunks of 1,000 rows, Y processed 5 with LAGS."""
    s = schema
    conn.execute(f"INSERT INTO {s}.x_checkpoint (landing, source, source_sha256, rows_per_chunk, last_chunk, "
                 "rows_landed, rejected, updated_at) VALUES ('/l', '/src.csv', 'abc', 1000, %s, %s, 3, %s)",
                 (x_chunks, x_chunks * 1000 - 3, T0))
    conn.execute(f"INSERT INTO {s}.y_checkpoint (id, landing, output, last_chunk, finished, y_start_time, ready_at, "
                 "heartbeat_at) VALUES (1, '/l', '/o', %s, %s, %s, %s, now() - %s * interval '1 second')",
                 (len(LAGS), finished, T0, T0 if ready else None, heartbeat_age_s))
    per_chunk = {k: [d[0] for d in DETECTIONS if d[3] == k] for k in range(1, len(LAGS) + 1)}
    for k, lag in enumerate(LAGS, start=1):
        landed = T0 + timedelta(seconds=k)
        pats = per_chunk[k]
        conn.execute(f"INSERT INTO {s}.y_chunk_metrics (chunk, rows, quarantined, landed_at, committed_at, "
                     "batch_size, detections, pat1, pat2, pat3) VALUES (%s, 1000, %s, %s, %s, %s, %s, %s, %s, %s)",
                     (k, 2 if k == 3 else 0, landed, landed + timedelta(seconds=lag), 2 if k >= 4 else 1,
                      len(pats), pats.count("PatId1"), pats.count("PatId2"), pats.count("PatId3")))
    for seq, (pat, cust, merch, chunk) in enumerate(DETECTIONS, start=1):
        conn.execute(f"INSERT INTO {s}.detected_patterns (pattern_id, customer_id, merchant_id, action_type, "
                     "customer_name, chunk, seq, detection_time, y_start_time) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                     "%s, %s)", (pat, cust or f"X{seq}", merch, ACTIONS[pat], cust, chunk, seq,
                                 T0 + timedelta(seconds=chunk + 1), T0))
    conn.execute(f"INSERT INTO {s}.y_output_files (file_no, first_seq, last_seq) VALUES (1, 1, 2)")
    conn.execute(f"INSERT INTO {s}.y_quarantine (chunk, source_line, reason, raw) VALUES "
                 "(3, 17, 'non-numeric amount', 'x'), (3, 18, 'empty merchant id', 'y')")


def test_snapshot_reports_positions_totals_and_lag_percentiles(db, schema):
    seed(db, schema)
    s = snapshot(db, schema)
    assert (s["x"]["last_chunk"], s["y"]["last_chunk"], s["backlog_chunks"]) == (7, 5, 2)
    assert (s["chunks"], s["rows"], s["quarantined_rows"], s["max_batch_chunks"]) == (5, 5000, 2, 2)
    assert s["detections"] == {"PatId1": 1, "PatId2": 2, "PatId3": 1}
    assert (s["detections_total"], s["files"], s["detections_in_files"]) == (4, 1, 2)
    assert s["lag_p50_s"] == pytest.approx(np.percentile(LAGS, 50))
    assert s["lag_p95_s"] == pytest.approx(np.percentile(LAGS, 95), abs=1e-3)
    assert (s["lag_max_s"], s["lag_chunks"], s["lag_within_target"]) == (1.5, 5, 4)


def test_snapshot_series_holds_per_chunk_lag_and_cumulative_detections(db, schema):
    seed(db, schema)
    series = snapshot(db, schema)["series"]
    assert series["chunk"] == [1, 2, 3, 4, 5]
    assert series["lag_s"] == pytest.approx(LAGS)
    assert series["batch_size"] == [1, 1, 1, 2, 2]
    assert series["cumulative"] == {"PatId1": [0, 0, 0, 0, 1], "PatId2": [0, 1, 1, 2, 2],
                                    "PatId3": [0, 1, 1, 1, 1]}


def test_snapshot_series_after_a_chunk_holds_only_newer_chunks_with_running_totals(db, schema):
    seed(db, schema)
    series = snapshot(db, schema, after=3)["series"]
    assert (series["after"], series["chunk"]) == (3, [4, 5])
    assert series["cumulative"]["PatId2"] == [2, 2]


def test_newest_detections_come_first_with_their_output_file_or_pending(db, schema):
    seed(db, schema)
    newest = snapshot(db, schema)["newest_detections"]
    assert [(d["seq"], d["patternId"], d["customerName"], d["merchantId"], d["file"]) for d in newest] == [
        (4, "PatId1", "C3", "M3", None), (3, "PatId2", "C2", "M1", None), (2, "PatId3", "", "M2", 1),
        (1, "PatId2", "C1", "M1", 1)]
    assert newest[0]["ActionType"] == "UPGRADE"


def test_quarantined_rows_are_listed_newest_first(db, schema):
    seed(db, schema)
    q = snapshot(db, schema)["newest_quarantine"]
    assert {(e["chunk"], e["sourceLine"], e["reason"]) for e in q} == {
        (3, 17, "non-numeric amount"), (3, 18, "empty merchant id")}


@pytest.mark.parametrize(("ready", "heartbeat_age_s", "finished", "status"), [
    (False, 0.0, False, "starting"),
    (True, 0.5, False, "running"),
    (True, 60.0, False, "stalled"),
    (True, None, False, "stalled"),
    (True, 60.0, True, "finished"),
])
def test_y_status_follows_its_readiness_mark_and_heartbeat(db, schema, ready, heartbeat_age_s, finished, status):
    seed(db, schema, ready=ready, heartbeat_age_s=heartbeat_age_s, finished=finished)
    assert snapshot(db, schema)["y"]["status"] == status


def test_a_run_queued_after_y_started_sees_its_own_y_not_started(db, schema):
    """A run's tab (y_since = the run's queue time): an earlier run's finished Y is not this run's state."""
    seed(db, schema, finished=True)
    assert snapshot(db, schema, y_since=T0 - timedelta(seconds=1))["y"]["status"] == "finished"
    assert snapshot(db, schema, y_since=T0 + timedelta(seconds=1))["y"]["status"] == "not started"


def test_a_run_queued_after_x_last_landed_sees_its_own_x_not_started(db, schema):
    seed(db, schema)
    assert snapshot(db, schema, x_since=T0 - timedelta(seconds=1))["x"]["status"] == "landing"
    assert snapshot(db, schema, x_since=T0 + timedelta(seconds=1))["x"]["status"] == "not started"


def test_a_schema_before_its_first_run_reports_y_not_started(db, schema):
    s = snapshot(db, schema)
    assert (s["x"], s["y"]["status"], s["chunks"], s["lag_p95_s"]) == (None, "not started", 0, None)


def test_a_schema_without_txnwatch_tables_is_not_found(pg_server_url, schema):
    from txnwatch.core.db import connect

    with connect(pg_server_url, autocommit=True) as conn:
        with pytest.raises(SchemaNotFound):
            snapshot(conn, schema)


@pytest.mark.parametrize("bad", ["Public", "x; DROP TABLE y", "a-b", "", "1abc"])
def test_a_schema_name_outside_the_params_pattern_is_refused(db, bad):
    with pytest.raises(TxnwatchError, match="invalid schema name"):
        snapshot(db, bad)


def test_schemas_come_most_recently_active_first(db, schema, pg_server_url):
    from txnwatch.core.db import connect, init_schema
    from txnwatch.records.snapshot import list_schemas

    older = f"{schema}_old"
    try:
        init_schema(db, older)
        seed(db, older)
        seed(db, schema)
        db.execute(f"UPDATE {older}.y_checkpoint SET updated_at = now() + interval '1 hour'")
        db.execute(f"UPDATE {older}.x_checkpoint SET updated_at = now() + interval '1 hour'")
        db.execute(f"UPDATE {schema}.y_checkpoint SET updated_at = now() + interval '2 hours'")
        names = list_schemas(db)
        assert names.index(schema) < names.index(older) < len(names)
    finally:
        with connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {older} CASCADE")


def test_a_schema_whose_state_cannot_be_read_is_left_out_of_the_list(db, schema, pg_server_url):
    """As when a schema is dropped between listing and reading it: the others are still listed."""
    from txnwatch.core.db import connect
    from txnwatch.records.snapshot import list_schemas

    lookalike = f"{schema}_alike"
    try:
        db.execute(f"CREATE SCHEMA {lookalike}")
        db.execute(f"CREATE TABLE {lookalike}.x_checkpoint (id int)")  # no updated_at: not txnwatch's
        db.execute(f"CREATE TABLE {lookalike}.y_checkpoint (id int)")
        names = list_schemas(db)
        assert schema in names and lookalike not in names
    finally:
        with connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {lookalike} CASCADE")


def test_the_snapshot_never_writes(db, schema):
    seed(db, schema)
    db.execute("SET default_transaction_read_only = on")
    snapshot(db, schema)  # would fail on any write


# --- through the API server ------------------------------------------------------------------------


def test_the_json_without_a_token_is_refused_with_401(api_server, db, schema):
    seed(db, schema)
    status, body, _ = api_server.get(f"txnwatch/api/state/{schema}")
    assert status == 401, body


def test_the_page_without_a_token_is_refused_with_401(api_server):
    status, body, _ = api_server.get("txnwatch/view")
    assert status == 401, body


def test_a_forged_token_is_refused_with_403(api_server, db, schema):
    seed(db, schema)
    header, payload, _sig = api_server.token().split(".")
    status, _, _ = api_server.get(f"txnwatch/api/state/{schema}", token=f"{header}.{payload}.forged")
    assert status == 403


def test_the_json_with_the_ui_token_is_the_schemas_snapshot(api_server, db, schema):
    seed(db, schema)
    status, body, _ = api_server.get(f"txnwatch/api/state/{schema}?after=2", token=api_server.token())
    assert status == 200, body
    expected = json.loads(json.dumps(snapshot(db, schema, after=2)))
    for key in ("x", "backlog_chunks", "chunks", "detections", "lag_p95_s", "series", "newest_detections"):
        assert body[key] == expected[key], key


def test_the_ui_session_cookie_authenticates_the_page_like_the_ui_iframe(api_server):
    status, body, headers = api_server.get("txnwatch/view", cookie=api_server.token())
    assert status == 200
    assert 'src="static/live_view.js"' in body and headers["Cache-Control"] == "no-store"


def test_the_page_uses_only_relative_urls(api_server):
    for path in ("txnwatch/view", "txnwatch/static/live_view.js"):
        _, body, _ = api_server.get(path, cookie=api_server.token())
        assert 'src="/' not in body and 'href="/' not in body and "http://" not in body.replace(
            "http://www.w3.org/2000/svg", "")
        assert "fetch(\"/" not in body and "getJSON(\"/" not in body


def test_an_invalid_schema_in_the_url_gets_400(api_server):
    status, body, _ = api_server.get("txnwatch/api/state/Bad%3BName", token=api_server.token())
    assert status == 400 and "invalid schema name" in body["detail"]


def test_a_schema_without_tables_gets_404(api_server, schema):
    status, body, _ = api_server.get(f"txnwatch/api/state/{schema}", token=api_server.token())
    assert status == 404 and "no txnwatch tables" in body["detail"]


def test_schemas_lists_the_most_recently_active_schema_first(api_server, db, schema):
    seed(db, schema)
    db.execute(f"UPDATE {schema}.y_checkpoint SET updated_at = now() + interval '1 hour'")
    status, body, _ = api_server.get("txnwatch/api/schemas", token=api_server.token())
    assert status == 200
    assert body["schemas"][0] == body["default"] == schema


def test_no_secret_of_the_connection_reaches_the_json(api_server, db, schema):
    seed(db, schema)
    _, body, _ = api_server.get(f"txnwatch/api/state/{schema}", token=api_server.token())
    assert SECRET_PASSWORD not in json.dumps(body)


def test_plugin_adds_the_view_to_the_navigation_and_to_dag_run_pages(api_server):
    status, body, _ = api_server.get("api/v2/plugins", token=api_server.token())
    assert status == 200, body
    plugin = next(p for p in body["plugins"] if p["name"] == "txnwatch")
    views = {v["destination"]: v for v in plugin["external_views"]}
    assert views["nav"]["href"] == "txnwatch/view"
    assert views["dag_run"]["href"] == "txnwatch/run/{DAG_ID}/{RUN_ID}"
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/txnwatch"]


def test_a_runs_tab_opens_the_view_of_the_schema_in_its_conf(api_server, schema):
    from txnwatch.airflow.airflow_api import AirflowAPI
    from txnwatch.airflow.settings import Y_DAG_ID

    api = AirflowAPI(api_server.url, api_server.username, api_server.password)
    run_id = api.trigger(Y_DAG_ID, {"schema": schema})["dag_run_id"]
    try:
        status, _, headers = api_server.get(f"txnwatch/run/{Y_DAG_ID}/{quote(run_id, safe='')}", token=api.token())
    finally:  # no scheduler runs here, but later tests' schedulers would pick the queued run up
        api.delete_dag_run(Y_DAG_ID, run_id)
    assert status == 303
    assert headers["location"].startswith(f"../../view?schema={schema}&dag_id={Y_DAG_ID}&run_id=")
    # Y's state counts from the run's queue time on (an earlier run's Y is not shown as this run's).
    since = parse_qs(urlsplit(headers["location"]).query)["y_since"][0]
    assert datetime.fromisoformat(since).tzinfo is not None


def test_a_runs_tab_of_another_dag_is_not_found(api_server):
    status, body, _ = api_server.get("txnwatch/run/some_other_dag/manual__1", token=api_server.token())
    assert status == 404 and "not a txnwatch DAG" in body["detail"]


def test_importing_the_plugin_loads_neither_fastapi_nor_the_api_server():
    """Every Airflow process (each task too) imports the plugins folder: the app waits for a request."""
    code = ("import sys; sys.path.insert(0, 'plugins'); import txnwatch_plugin\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] == 'fastapi' or m.startswith('airflow.api_fastapi')]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_an_unreachable_database_gets_503_without_its_password():
    from fastapi import HTTPException

    from txnwatch.airflow.live_view.app import _connect

    with pytest.raises(HTTPException) as e:
        _connect(f"postgresql://u:{SECRET_PASSWORD}@127.0.0.1:1/db")
    assert e.value.status_code == 503 and SECRET_PASSWORD not in e.value.detail
