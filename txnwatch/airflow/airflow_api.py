"""Airflow's public REST API v2 through the official client (`apache-airflow-client`, released with Airflow
and pinned to the same version), authenticated like the UI: a JWT from the auth manager's `POST /auth/token`,
sent as a bearer token. That login endpoint belongs to the auth manager, not to the public API's spec, so the
client has no call for it: it is made here by hand, as is the one request to the Task Execution API (its
health route, see `initialize_execution_api`), which is the workers' API, not the public one.

Results are returned as the API's JSON (plain dicts, times as ISO strings), as the callers expect.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import urllib3
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api import DAGApi, DagRunApi, MonitorApi, TaskInstanceApi
from airflow_client.client.exceptions import ApiException, NotFoundException, UnauthorizedException
from airflow_client.client.models import DAGPatchBody, TriggerDAGRunPostBody

from txnwatch.core.errors import TxnwatchError

# Failures of the connection itself (refused, reset, timed out), as opposed to an answer from the server.
CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, urllib.error.URLError, ConnectionError, TimeoutError)


class AirflowNotFound(TxnwatchError):
    """The API answered 404: no such DAG, run or task."""


class AirflowAPI:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None
        # No retries inside urllib3: `_call` retries reads itself, and never writes (they may have happened).
        self._config = Configuration(host=self.base_url, retries=False)
        self._client = ApiClient(self._config)

    def token(self) -> str:
        """POST /auth/token with the user's credentials, as the UI's login form does."""
        if self._token is None:
            req = urllib.request.Request(f"{self.base_url}/auth/token", method="POST",
                                         data=json.dumps({"username": self.username,
                                                          "password": self._password}).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    self._token = json.loads(resp.read())["access_token"]
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:500]
                raise TxnwatchError(f"Airflow API POST /auth/token: HTTP {e.code}: {detail}") from None
            except CONNECTION_ERRORS as e:
                raise TxnwatchError(f"Airflow API POST /auth/token: {getattr(e, 'reason', e)}") from None
        return self._token

    def _call(self, what: str, call: Callable[..., Any], *args: Any, write: bool = False, attempts: int = 4,
              auth: bool = True, **kwargs: Any) -> Any:
        """One API call through the client, as JSON. Reads are retried on connection failures, as an API
        server on a busy machine can be slow to answer for a while; writes are not: they may have happened.
        An expired token (401) logs in again, once."""
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            self._config.access_token = self.token() if auth else None
            try:
                result = call(*args, _request_timeout=self.timeout, **kwargs)
            except UnauthorizedException:
                if relogged or not auth:
                    raise TxnwatchError(f"Airflow API {what}: HTTP 401: not authenticated") from None
                self._token, relogged = None, True
                continue
            except NotFoundException as e:
                raise AirflowNotFound(f"Airflow API {what}: HTTP 404: {(e.body or '')[:500]}") from None
            except ApiException as e:
                raise TxnwatchError(f"Airflow API {what}: HTTP {e.status}: {(e.body or '')[:500]}") from None
            except CONNECTION_ERRORS as e:
                if write or attempt >= attempts:
                    raise TxnwatchError(f"Airflow API {what}: {getattr(e, 'reason', e)}") from None
                time.sleep(2.0 * attempt)
                continue
            return None if result is None else json.loads(result.to_json())

    def healthy(self) -> dict | None:
        try:
            return self._call("health", MonitorApi(self._client).get_health, auth=False, attempts=1)
        except TxnwatchError:
            return None

    def get_dag(self, dag_id: str) -> dict | None:
        try:
            return self._call(f"get DAG {dag_id}", DAGApi(self._client).get_dag, dag_id)
        except AirflowNotFound:
            return None

    def unpause(self, dag_id: str) -> None:
        self._call(f"unpause {dag_id}", DAGApi(self._client).patch_dag, dag_id, DAGPatchBody(is_paused=False),
                   write=True)

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> dict:
        # No logical date: a manual run of its own, not tied to a data interval (the UI's default too).
        body = TriggerDAGRunPostBody(logical_date=None, conf=conf, dag_run_id=run_id)
        return self._call(f"trigger {dag_id}", DagRunApi(self._client).trigger_dag_run, dag_id, body, write=True)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._call(f"get run {run_id} of {dag_id}", DagRunApi(self._client).get_dag_run, dag_id, run_id)

    def dag_runs(self, dag_id: str, state: str | None = None) -> list[str]:
        """The run ids of a DAG (in `state`, when given), oldest first."""
        reply = self._call(f"list runs of {dag_id}", DagRunApi(self._client).get_dag_runs, dag_id,
                           order_by=["run_after"], limit=100, **({"state": [state]} if state else {}))
        return [r["dag_run_id"] for r in reply["dag_runs"]]

    def delete_dag_run(self, dag_id: str, run_id: str) -> None:
        self._call(f"delete run {run_id} of {dag_id}", DagRunApi(self._client).delete_dag_run, dag_id, run_id,
                   write=True)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        reply = self._call(f"task instances of {run_id} of {dag_id}",
                           TaskInstanceApi(self._client).get_task_instances, dag_id, run_id)
        return reply["task_instances"]

    def initialize_execution_api(self) -> None:
        """Have the API server build its Task Execution API now.

        The execution API (under /execution, where every task reports it is running) is a Cadwyn app,
        which builds its versioned routes on its first request, in the server's event loop: the first task
        to start waited for that, and every request with it (3.3 s of Trigger to Y running on two cores).
        Its health route asks for no login; any answer means the routes are built."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/execution/health", timeout=self.timeout):
                pass
        except urllib.error.HTTPError:
            pass  # an answer all the same
        except CONNECTION_ERRORS as e:
            raise TxnwatchError(f"Airflow API GET /execution/health: {getattr(e, 'reason', e)}") from None

    def wait_ready(self, dag_ids: list[str], timeout: float = 600.0, on_wait=None) -> None:
        """Until the scheduler, triggerer and DAG processor report healthy and the DAGs are parsed; then
        the execution API is built (`initialize_execution_api`), so that the first task starts at once.

        The bound is generous: on a busy two-core machine the API server alone took over 4 minutes to start.
        """
        deadline = time.monotonic() + timeout
        while True:
            health = self.healthy()
            ok = bool(health) and all((health.get(k) or {}).get("status") == "healthy"
                                      for k in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
            if ok and all(self.get_dag(d) is not None for d in dag_ids):
                self.initialize_execution_api()
                return
            if time.monotonic() > deadline:
                raise TxnwatchError(f"Airflow did not become ready within {timeout:.0f}s (health: {health})")
            if on_wait:
                on_wait(health)
            time.sleep(1.0)
