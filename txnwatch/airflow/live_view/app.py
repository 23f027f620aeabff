"""The live view's FastAPI app, mounted by Airflow's API server under `/txnwatch` (see the plugin).

Airflow does not authenticate a plugin's app: every route here that shows data depends on `reader`,
which resolves the caller with the API server's own `get_user` (the UI's JWT from the `Authorization`
header or the `_token` cookie the UI holds, validated by the configured auth manager) and then asks the
auth manager whether that user may read both txnwatch DAGs. No token: 401; a bad token: 403; a user
without access to the DAGs: 403. The static files (script and style, no data) are public.

Routes, relative to the mount point:
- `view?schema=S`: the page; it polls `api/state/S` every second.
- `run/{dag_id}/{run_id}`: the run page's tab; redirects to the view of that run's schema.
- `api/schemas`: schemas holding txnwatch tables. `api/state/{schema}?after=K`: the state (see snapshot).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from txnwatch.airflow.settings import DEFAULT_SCHEMA, POSTGRES_CONN_ID, X_DAG_ID, Y_DAG_ID
from txnwatch.core.db import check_schema, redact
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.records.snapshot import SchemaNotFound, list_schemas, snapshot

STATIC_DIR = Path(__file__).resolve().parent / "static"
TXNWATCH_DAGS = (X_DAG_ID, Y_DAG_ID)
# A poll must stay short: a slow query is cut off rather than piling up behind the next poll.
STATEMENT_TIMEOUT_MS = 3000


def reader(user: GetUserDep) -> BaseUser:
    """The authenticated caller, provided it may read both txnwatch DAGs (403 otherwise)."""
    auth_manager = get_auth_manager()
    for dag_id in TXNWATCH_DAGS:
        if not auth_manager.is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"not allowed to read DAG {dag_id}")
    return user


ReaderDep = Annotated[BaseUser, Depends(reader)]


def state_db_url() -> str:
    """The libpq URL of the `postgres_default` connection (resolved per request: it may change)."""
    from txnwatch.airflow.tasks import db_url_for

    return db_url_for(POSTGRES_CONN_ID)


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="txnwatch-live-view",
                               options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
                                       "-c default_transaction_read_only=on")
    except psycopg.OperationalError as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"cannot connect to PostgreSQL at {redact(url)}: {first_line(e)}") from None


def _valid_schema(schema: str) -> str:
    try:
        return check_schema(schema)
    except TxnwatchError as e:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e)) from None


def _aware(moment: datetime | None) -> datetime | None:
    """A naive time from a query string is UTC (Airflow's own times are)."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def create_app(db_url=state_db_url) -> FastAPI:
    """The app; `db_url` returns the state database's URL (the tests pass their own server's)."""
    app = FastAPI(title="txnwatch live view", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(HTTPException)
    async def page_refusal_for_people(request: Request, exc: HTTPException) -> Response:
        """A browser refused the page gets the same status with a line of HTML and a link to log in."""
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code in (401, 403) and request.url.path.endswith("/view") and wants_html:
            # `next`: the login page brings the user back here once signed in.
            login = "../" + get_auth_manager().get_url_login(next_url=str(request.url)).lstrip("/")
            body = (f"<!doctype html><title>txnwatch live</title><p>{html.escape(str(exc.detail))}: "
                    f'<a href="{html.escape(login)}">log in to Airflow</a>, then open this view again.</p>')
            return HTMLResponse(body, status_code=exc.status_code, headers=exc.headers)
        return await http_exception_handler(request, exc)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("view", status.HTTP_307_TEMPORARY_REDIRECT)

    @app.get("/view", dependencies=[Depends(reader)])
    def view() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/run/{dag_id}/{run_id}")
    def run_view(dag_id: str, run_id: str, user: ReaderDep, session: SessionDep) -> RedirectResponse:
        """The view of the schema a txnwatch DAG run works on (its conf, else the DAG's default)."""
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        if dag_id not in TXNWATCH_DAGS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} is not a txnwatch DAG")
        if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                                    details=DagDetails(id=dag_id), user=user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"not allowed to read runs of {dag_id}")
        run = session.execute(select(DagRun.conf, DagRun.queued_at, DagRun.run_after)
                              .where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
        if run is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id} of {dag_id}")
        conf, queued_at, run_after = run
        schema = _valid_schema(str((conf or {}).get("schema") or DEFAULT_SCHEMA))
        # The run's own mechanism is shown from this run on: one active before it was an earlier run's.
        since = "y_since" if dag_id == Y_DAG_ID else "x_since"
        query = urlencode({"schema": schema, "dag_id": dag_id, "run_id": run_id,
                           since: (queued_at or run_after).isoformat()})
        # Relative: the app does not know where the API server mounts it, nor behind which proxy.
        return RedirectResponse(f"../../view?{query}", status.HTTP_303_SEE_OTHER)

    @app.get("/api/schemas", dependencies=[Depends(reader)])
    def schemas() -> dict[str, Any]:
        url = db_url()
        with _connect(url) as conn:
            try:
                names = list_schemas(conn)
                return {"schemas": names, "default": names[0] if names else DEFAULT_SCHEMA}
            except psycopg.Error as e:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    f"PostgreSQL at {redact(url)}: {first_line(e)}") from None

    @app.get("/api/state/{schema}", dependencies=[Depends(reader)])
    def state(schema: str, after: Annotated[int, Query(ge=0)] = 0, y_since: datetime | None = None,
              x_since: datetime | None = None) -> dict[str, Any]:
        schema = _valid_schema(schema)
        url = db_url()
        with _connect(url) as conn:
            try:
                return snapshot(conn, schema, after=after, y_since=_aware(y_since), x_since=_aware(x_since))
            except SchemaNotFound as e:
                raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
            except psycopg.Error as e:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    f"PostgreSQL at {redact(url)}: {first_line(e)}") from None

    return app
