"""The database URL from a Databricks secret scope, read by the job itself.

Serverless jobs compute has no cluster whose `spark_env_vars` could carry a `{{secrets/<scope>/<key>}}`
reference, so the job is given only the scope and key (`--db-secret SCOPE/KEY`) and reads the value at
start through the official databricks-sdk: on Databricks `WorkspaceClient().dbutils` is the runtime's own
dbutils (https://docs.databricks.com/aws/en/dev-tools/databricks-utils#secrets); elsewhere the SDK's
unified authentication calls the Secrets API (`GET /api/2.0/secrets/get`). The value is never logged.
"""

from __future__ import annotations

from txnwatch.core.errors import TxnwatchError, first_line


def parse_secret_ref(ref: str) -> tuple[str, str]:
    """`SCOPE/KEY` -> (scope, key), refusing anything else in one line."""
    scope, sep, key = (ref or "").strip().partition("/")
    if not (sep and scope and key) or "/" in key:
        raise TxnwatchError(f"--db-secret {ref!r}: expected SCOPE/KEY, e.g. txnwatch/db_url")
    return scope, key


def read_secret(ref: str) -> str:
    """The value of the Databricks secret `SCOPE/KEY`."""
    scope, key = parse_secret_ref(ref)
    try:
        from databricks.sdk import WorkspaceClient
    except ImportError:
        raise TxnwatchError("--db-secret needs databricks-sdk (every Databricks runtime ships it)") from None
    try:
        value = WorkspaceClient().dbutils.secrets.get(scope=scope, key=key)
    except Exception as e:  # noqa: BLE001 - auth, permission, a missing scope or key: one line
        raise TxnwatchError(f"cannot read the Databricks secret {scope}/{key}: {first_line(e, 300)}") from None
    if not value:
        raise TxnwatchError(f"the Databricks secret {scope}/{key} is empty")
    return value
