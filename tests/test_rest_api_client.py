"""The REST API v2 client of the demo, `make airflow-up` and the tests (`txnwatch.airflow.airflow_api`,
over the official `apache-airflow-client`), against a real Airflow API server: its refusals arrive as one-line
errors, never as the client's exceptions.

It shares the session's API server of `test_live_view.py` (the file name sorts after it, so that server is
not started earlier in the suite and left idle through the other Airflow tests)."""

from __future__ import annotations

import pytest

from tests.airflow_support import metadata_libpq_url
from tests.helpers import free_port
from txnwatch.airflow.airflow_api import AirflowAPI
from txnwatch.airflow.settings import Y_DAG_ID
from txnwatch.core.errors import TxnwatchError

pytest_plugins = ["tests.airflow_fixtures", "tests.live_view_support"]


def client(api_server, password: str | None = None) -> AirflowAPI:
    return AirflowAPI(api_server.url, api_server.username, password or api_server.password)


def test_a_parsed_dag_is_found_and_an_unknown_one_is_none(api_server):
    api = client(api_server)
    assert api.get_dag(Y_DAG_ID)["dag_id"] == Y_DAG_ID
    assert api.get_dag("no_such_dag") is None


def test_a_triggered_run_is_listed_with_its_conf_and_can_be_deleted(api_server, schema):
    api = client(api_server)
    run_id = api.trigger(Y_DAG_ID, {"schema": schema})["dag_run_id"]
    try:
        assert api.dag_run(Y_DAG_ID, run_id)["conf"] == {"schema": schema}
        assert run_id in api.dag_runs(Y_DAG_ID)
    finally:  # no scheduler runs here, but later tests' schedulers would pick the queued run up
        api.delete_dag_run(Y_DAG_ID, run_id)
    assert run_id not in api.dag_runs(Y_DAG_ID)


def test_an_unknown_run_is_a_one_line_404(api_server):
    with pytest.raises(TxnwatchError, match=r"^Airflow API get run nope of \S+: HTTP 404: .*not found") as e:
        client(api_server).dag_run(Y_DAG_ID, "nope")
    assert "\n" not in str(e.value)


def test_a_wrong_password_is_a_one_line_error_without_the_password(api_server):
    with pytest.raises(TxnwatchError, match=r"^Airflow API POST /auth/token: HTTP 401") as e:
        client(api_server, password="wr0ng-Pw").get_dag(Y_DAG_ID)
    assert "wr0ng-Pw" not in str(e.value) and "\n" not in str(e.value)


def test_no_server_is_unhealthy_and_a_write_fails_at_once_in_one_line():
    api = AirflowAPI(f"http://127.0.0.1:{free_port()}", "admin", "pw", timeout=2)
    assert api.healthy() is None
    with pytest.raises(TxnwatchError, match=r"^Airflow API POST /auth/token: .*[Cc]onnection refused"):
        api.trigger(Y_DAG_ID, {})


def test_a_run_queued_behind_a_run_left_running_is_told_which_one(api_server, airflow_local, schema):
    """A stack killed mid-run leaves its Y run `running` in the metadata database: the demo's next run
    queues behind it (one run at a time), and `queued_behind` names it instead of a silent wait."""
    import psycopg

    from txnwatch.local.demo import queued_behind

    api = client(api_server)
    left, waiting = (api.trigger(Y_DAG_ID, {"schema": schema})["dag_run_id"] for _ in range(2))
    metadata = metadata_libpq_url(airflow_local)
    try:
        # Both queued: the first holds no slot (other tests' runs on this shared server may be named).
        assert left not in (queued_behind(api, Y_DAG_ID, waiting) or "")
        with psycopg.connect(metadata, autocommit=True) as conn:  # what a killed stack leaves behind
            conn.execute("UPDATE dag_run SET state = 'running' WHERE dag_id = %s AND run_id = %s", (Y_DAG_ID, left))
        note = queued_behind(api, Y_DAG_ID, waiting)
        assert note is not None and left in note and "mark it failed" in note
    finally:  # no scheduler runs here, but later tests' schedulers would pick the runs up
        with psycopg.connect(metadata, autocommit=True) as conn:  # a running run cannot be deleted (409)
            conn.execute("UPDATE dag_run SET state = 'failed' WHERE dag_id = %s AND run_id = %s", (Y_DAG_ID, left))
        for run_id in (left, waiting):
            api.delete_dag_run(Y_DAG_ID, run_id)
