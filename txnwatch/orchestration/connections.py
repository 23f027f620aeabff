"""Airflow connections -> what txnwatch needs (a PostgreSQL URL, S3 credentials for a subprocess).

Functions take connection-like objects (host, port, login, password, schema, extra_dejson) so they are
testable without Airflow; the operators pass real `airflow.sdk.Connection` objects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode


def postgres_url(conn: Any) -> str:
    """A libpq URL for a Postgres connection (Airflow's `schema` field is the database name)."""
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    host = conn.host or "127.0.0.1"
    port = f":{conn.port}" if conn.port else ""
    database = conn.schema or "postgres"
    extra = {k: v for k, v in (getattr(conn, "extra_dejson", None) or {}).items()
             if k in ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options")}
    query = f"?{urlencode(extra)}" if extra else ""
    return f"postgresql://{auth}{host}{port}/{quote(database, safe='')}{query}"


def aws_env(conn: Any | None) -> dict[str, str]:
    """Environment variables that give a subprocess (spark-submit) the S3 access of an AWS connection.

    Passed through the environment, never argv, so credentials stay out of process lists and logs.
    """
    if conn is None:
        return {}
    env: dict[str, str] = {}
    extra = getattr(conn, "extra_dejson", None) or {}
    key_id = conn.login or extra.get("aws_access_key_id")
    secret = conn.password or extra.get("aws_secret_access_key")
    if key_id and secret:
        env["AWS_ACCESS_KEY_ID"] = key_id
        env["AWS_SECRET_ACCESS_KEY"] = secret
    if extra.get("aws_session_token"):
        env["AWS_SESSION_TOKEN"] = extra["aws_session_token"]
    endpoint = extra.get("endpoint_url") or (extra.get("service_config", {}).get("s3", {}) or {}).get(
        "endpoint_url")
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    if extra.get("region_name"):
        env["AWS_DEFAULT_REGION"] = extra["region_name"]
    return env


def uses_s3(*urls: str | None) -> bool:
    return any(u and str(u).startswith("s3://") for u in urls)


def databricks_client_args(conn: Any) -> dict[str, str]:
    """databricks-sdk `WorkspaceClient` arguments for a Databricks connection, read as the provider's hook
    reads it: host (or extra `host`; `schema` and `port` complete a bare host name), a personal access
    token (password without login, or extra `token`), or a service principal (login + password with extra
    `service_principal_oauth`). Other auth kinds (Azure AD) are not supported by the release check."""
    extra = getattr(conn, "extra_dejson", None) or {}
    host = (extra.get("host") or conn.host or "").rstrip("/")
    if not host:
        raise ValueError("the Databricks connection has no host")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}{f':{conn.port}' if conn.port else ''}"
    if extra.get("token"):
        return {"host": host, "token": extra["token"], "auth_type": "pat"}
    if conn.password and not conn.login:
        return {"host": host, "token": conn.password, "auth_type": "pat"}
    if conn.login and conn.password and extra.get("service_principal_oauth"):
        return {"host": host, "client_id": conn.login, "client_secret": conn.password, "auth_type": "oauth-m2m"}
    raise ValueError("the Databricks connection has neither a token nor service principal credentials")
