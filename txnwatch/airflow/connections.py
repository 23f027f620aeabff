"""Airflow connections -> what txnwatch needs (a PostgreSQL URL, S3 credentials for a subprocess).

Read through the providers' hooks, so what the hooks honour (RDS IAM tokens for Postgres; role ARNs,
profiles and session tokens for AWS) applies here too. Imported at run time only (never at DAG parse).
"""

from __future__ import annotations

from typing import Any

# libpq options a Postgres connection's extra may carry (the hook's SQLAlchemy URL takes only
# `sqlalchemy_query`): passed on as URL parameters.
_LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options")


def postgres_url(postgres_conn_id: str) -> str:
    """A libpq URL for an Airflow Postgres connection, from PostgresHook.sqlalchemy_url (Airflow's
    `schema` field is the database name; none means `postgres`)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=postgres_conn_id)
    url = hook.sqlalchemy_url
    extra = hook.connection.extra_dejson
    # The hook names a SQLAlchemy driver (postgresql+psycopg); libpq and psycopg.connect want postgresql.
    url = url.set(drivername="postgresql", host=url.host or "127.0.0.1", database=url.database or "postgres")
    url = url.update_query_dict({k: str(extra[k]) for k in _LIBPQ_EXTRAS if k in extra})
    return url.render_as_string(hide_password=False)


def aws_env(aws_conn_id: str) -> dict[str, str]:
    """Environment variables that give a subprocess (spark-submit) the S3 access of an AWS connection,
    as S3Hook resolves it (keys, a session token from an assumed role, a profile, or the default chain).

    Passed through the environment, never argv, so credentials stay out of process lists and logs.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    creds = hook.get_credentials()
    env: dict[str, str] = {}
    if creds.access_key and creds.secret_key:
        env.update(AWS_ACCESS_KEY_ID=creds.access_key, AWS_SECRET_ACCESS_KEY=creds.secret_key)
    if creds.token:
        env["AWS_SESSION_TOKEN"] = creds.token
    endpoint = hook.conn_config.get_service_endpoint_url("s3")
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    if hook.conn_region_name:
        env["AWS_DEFAULT_REGION"] = hook.conn_region_name
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
