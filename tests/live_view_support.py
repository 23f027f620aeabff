"""Fixtures of the live-view tests (a pytest plugin module, used with airflow_fixtures): a real Airflow
API server with the repo's plugins folder mounted, on its own free port, and helpers to call it as the UI
does (JWT from POST /auth/token)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from tests.airflow_support import airflow_env, kill_group, start
from tests.helpers import free_port, wait_for


@dataclass
class ApiServer:
    url: str
    username: str
    password: str
    env: dict
    log: object

    def token(self) -> str:
        from txnwatch.airflow.airflow_api import AirflowAPI

        return AirflowAPI(self.url, self.username, self.password).token()

    def get(self, path: str, token: str | None = None, cookie: str | None = None) -> tuple[int, Any, Message]:
        """GET `path` (relative to the server); returns (status, JSON or text body, headers); no redirects."""
        req = urllib.request.Request(f"{self.url}/{path.lstrip('/')}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if cookie:
            req.add_header("Cookie", f"_token={cookie}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                status, body, headers = r.status, r.read().decode(), r.headers
        except urllib.error.HTTPError as e:
            status, body, headers = e.code, e.read().decode(), e.headers
        try:
            return status, json.loads(body), headers
        except json.JSONDecodeError:
            return status, body, headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="session")
def api_server(airflow_local, pg_server_url, tmp_path_factory):
    """`airflow api-server` of the session's local Airflow, on a port of its own (no other service)."""
    from txnwatch.local.airflow_home import ADMIN_USER

    la = airflow_local
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = airflow_env(la, pg_server_url, AIRFLOW__API__PORT=str(port), AIRFLOW__API__BASE_URL=url)
    log = tmp_path_factory.mktemp("api_server") / "api-server.log"
    proc = start([la.airflow_executable(), "api-server"], env, log)

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, timeout=180, interval=0.5, what="the Airflow API server")
    yield ApiServer(url=url, username=ADMIN_USER, password=la.admin_password(), env=env, log=log)
    kill_group(proc)
