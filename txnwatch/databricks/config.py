"""The Databricks job's settings: where releases go, the cluster, the secrets' names (read at run time).

Each value comes from the environment, else from an Airflow Variable of the same name in lower case, else
its default (`databricks_config`). None of them is a secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from txnwatch.core.paths import DETECT_ENTRY_SCRIPT, REPO_ROOT

__all__ = ["DETECT_ENTRY_SCRIPT", "REPO_ROOT", "DatabricksConfig", "databricks_config"]


@dataclass(frozen=True)
class DatabricksConfig:
    """Where the job runs on Databricks. None of these values is a secret."""

    # Where `txnwatch databricks deploy` puts each release and the DAG finds it: a Unity Catalog volume
    # (/Volumes/<catalog>/<schema>/<volume>/...) or workspace files (/Workspace/...). Not the DBFS root:
    # libraries there are disabled by default from Databricks Runtime 15.1.
    artifacts_root: str = "/Volumes/main/txnwatch/artifacts"
    # Explicit paths instead of the deployed release of this code (None: <artifacts_root>/txnwatch-<version>/...).
    entry_script: str | None = None
    wheel: str | None = None
    # Extra PyPI packages for the job, comma-separated: none by default, as the wheel declares what it needs
    # beyond the runtime (pyproject.toml's dependencies).
    pypi_packages: str = ""
    # serverless | job_cluster | existing_cluster (None: existing_cluster when a cluster id is set, else
    # job_cluster). See databricks.py for what each needs.
    compute: str | None = None
    existing_cluster_id: str | None = None
    # A new job cluster's Unity Catalog access mode: standard (Databricks' recommendation for classic
    # compute; the driver is a Spark Connect client), dedicated (classic driver, one user or group), or
    # policy (the cluster policy `policy_id` sets it).
    access_mode: str = "standard"
    single_user_name: str | None = None
    policy_id: str | None = None
    # Serverless environment version (4: Python 3.12 with a Spark 4 Connect client).
    environment_version: str = "4"
    # Databricks Runtime 17.3 LTS: Apache Spark 4.0.0, Scala 2.13 (the job needs Spark >= 4.0).
    spark_version: str = "17.3.x-scala2.13"
    node_type_id: str = "i3.xlarge"
    num_workers: int = 1
    secret_scope: str = "txnwatch"
    db_url_secret_key: str = "db_url"
    aws_access_key_secret_key: str | None = None
    aws_secret_key_secret_key: str | None = None
    instance_profile_arn: str | None = None
    timeout_seconds: int = 4 * 3600
    extra_spark_conf: dict = field(default_factory=dict)


_DATABRICKS_KEYS = {
    "artifacts_root": "TXNWATCH_DATABRICKS_ARTIFACTS",
    "entry_script": "TXNWATCH_DATABRICKS_ENTRY_SCRIPT",
    "wheel": "TXNWATCH_DATABRICKS_WHEEL",
    "pypi_packages": "TXNWATCH_DATABRICKS_PYPI",
    "compute": "TXNWATCH_DATABRICKS_COMPUTE",
    "existing_cluster_id": "TXNWATCH_DATABRICKS_CLUSTER_ID",
    "access_mode": "TXNWATCH_DATABRICKS_ACCESS_MODE",
    "single_user_name": "TXNWATCH_DATABRICKS_SINGLE_USER",
    "policy_id": "TXNWATCH_DATABRICKS_POLICY_ID",
    "environment_version": "TXNWATCH_DATABRICKS_ENVIRONMENT_VERSION",
    "spark_version": "TXNWATCH_DATABRICKS_SPARK_VERSION",
    "node_type_id": "TXNWATCH_DATABRICKS_NODE_TYPE",
    "num_workers": "TXNWATCH_DATABRICKS_NUM_WORKERS",
    "secret_scope": "TXNWATCH_DATABRICKS_SECRET_SCOPE",
    "db_url_secret_key": "TXNWATCH_DATABRICKS_DB_URL_SECRET",
    "aws_access_key_secret_key": "TXNWATCH_DATABRICKS_AWS_KEY_ID_SECRET",
    "aws_secret_key_secret_key": "TXNWATCH_DATABRICKS_AWS_SECRET_SECRET",
    "instance_profile_arn": "TXNWATCH_DATABRICKS_INSTANCE_PROFILE",
    "timeout_seconds": "TXNWATCH_DATABRICKS_TIMEOUT_S",
}


def databricks_config(get_variable=None) -> DatabricksConfig:
    """The Databricks settings, read at run time.

    Each setting comes from the environment variable named in `_DATABRICKS_KEYS`, else from the Airflow
    Variable of the same name in lower case (when `get_variable(name, default)` is given), else the default.
    """
    values: dict = {}
    for attr, env in _DATABRICKS_KEYS.items():
        raw = os.environ.get(env)
        if raw is None and get_variable is not None:
            raw = get_variable(env.lower(), None)
        if raw is None or raw == "":
            continue
        values[attr] = int(raw) if attr in ("num_workers", "timeout_seconds") else raw
    return DatabricksConfig(**values)
