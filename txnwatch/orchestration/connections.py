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
