"""A small client of Airflow's public REST API v2, authenticated like the UI (simple auth manager JWT)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from txnwatch.errors import TxnwatchError


class AirflowAPI:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True, attempts: int = 4) -> Any:
        """One API call; reads (GET) are retried on timeouts and refused connections, as an API server
        on a busy machine can be slow to answer for a while. Writes are not: they may have happened."""
        for attempt in range(1, attempts + 1):
            try:
                return self._request_once(method, path, body, auth)
            except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
                if method != "GET" or attempt == attempts:
                    raise TxnwatchError(f"Airflow API {method} {path}: {getattr(e, 'reason', e)}") from None
                time.sleep(2.0 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request_once(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            if e.code == 401 and auth and self._token is not None:
                self._token = None  # expired: log in again once
                return self._request_once(method, path, body, auth)
            raise TxnwatchError(f"Airflow API {method} {path}: HTTP {e.code}: {detail}") from None

    def token(self) -> str:
        """POST /auth/token with the user's credentials, as the UI's login form does."""
        if self._token is None:
            reply = self._request("POST", "/auth/token",
                                  {"username": self.username, "password": self._password}, auth=False)
            self._token = reply["access_token"]
        return self._token

    def healthy(self) -> dict | None:
        try:
            return self._request("GET", "/api/v2/monitor/health", auth=False, attempts=1)
        except (TxnwatchError, OSError):
            return None

    def get_dag(self, dag_id: str) -> dict | None:
        try:
            return self._request("GET", f"/api/v2/dags/{dag_id}")
        except TxnwatchError as e:
            if "HTTP 404" in str(e):
                return None
            raise

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> dict:
        body: dict = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str) -> list[str]:
        """The run ids of a DAG, oldest first."""
        reply = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")
        return [r["dag_run_id"] for r in reply["dag_runs"]]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def wait_ready(self, dag_ids: list[str], timeout: float = 600.0, on_wait=None) -> None:
        """Until the scheduler, triggerer and DAG processor report healthy and the DAGs are parsed.

        The bound is generous: on a busy two-core machine the API server alone took over 4 minutes to start.
        """
        deadline = time.monotonic() + timeout
        while True:
            health = self.healthy()
            ok = bool(health) and all((health.get(k) or {}).get("status") == "healthy"
                                      for k in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
            if ok and all(self.get_dag(d) is not None for d in dag_ids):
                return
            if time.monotonic() > deadline:
                raise TxnwatchError(f"Airflow did not become ready within {timeout:.0f}s (health: {health})")
            if on_wait:
                on_wait(health)
            time.sleep(1.0)
