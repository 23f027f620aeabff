"""The Databricks `runs/submit` payload of Mechanism Y: built at run time, free of secrets.

The payload is the Jobs API 2.2 form: one task (`task_key` "detect") running the Spark entry script as a
`spark_python_task` with the project's wheel as a library, both from the deployed release of this code
(`txnwatch databricks deploy`, see release.py). Credentials reach the cluster as Databricks secret
references (`{{secrets/<scope>/<key>}}` in `spark_env_vars`), which Databricks resolves on the cluster;
the payload itself never holds a secret.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from txnwatch.core.errors import TxnwatchError
from txnwatch.orchestration.release import Release
from txnwatch.orchestration.settings import DatabricksConfig

TASK_KEY = "detect"
# Databricks Runtime 17.0 is the first with Apache Spark 4 (17.3 LTS: Spark 4.0.0).
MIN_RUNTIME_MAJOR = 17


def idempotency_token(dag_id: str, run_id: str, task_id: str, try_scope: str = "") -> str:
    """A stable token (64 hex chars, Databricks allows at most 64) for one task of one DAG run.

    A retry of the task re-submits with the same token, so Databricks returns the run already started
    instead of launching a second one.
    """
    raw = "\x1f".join((dag_id, run_id, task_id, try_scope))
    return hashlib.sha256(raw.encode()).hexdigest()


def secret_ref(scope: str, key: str) -> str:
    return "{{secrets/" + scope + "/" + key + "}}"


def detect_parameters(landing: str, output: str, schema: str, until_end: bool = True,
                      thresholds: dict | None = None, max_batch_chunks: int | None = None) -> list[str]:
    """argv of the entry script (the same as `txnwatch detect`), without the database URL."""
    params = ["--landing", landing, "--output", output, "--schema", schema]
    if until_end:
        params.append("--until-end")
    if max_batch_chunks:
        params += ["--max-batch-chunks", str(int(max_batch_chunks))]
    for name, value in sorted((thresholds or {}).items()):
        params += ["--threshold", f"{name}={value}"]
    return params


def check_runtime(spark_version: str) -> None:
    """Refuse a Databricks Runtime whose Spark is older than 4.0 (a custom image key passes through)."""
    m = re.match(r"(\d+)\.(\d+)\.x-", spark_version)
    if m and int(m.group(1)) < MIN_RUNTIME_MAJOR:
        raise TxnwatchError(f"Databricks Runtime {m.group(1)}.{m.group(2)} ({spark_version}) ships Spark 3.x; the "
                            "detect job needs Spark >= 4.0: use 17.3.x-scala2.13 (17.3 LTS) or later")


def check_artifact_path(path: str, what: str) -> None:
    """Refuse a library or script path in the DBFS root (disabled for libraries from Runtime 15.1)."""
    p = path.strip()
    if (p.startswith("dbfs:/") and not p.startswith("dbfs:/Volumes/")) or p.startswith("/dbfs/"):
        raise TxnwatchError(f"{what} {path} is in the DBFS root, where Databricks disables libraries from "
                            "Runtime 15.1: use a Unity Catalog volume (/Volumes/...) or workspace files "
                            "(/Workspace/...)")
    if not (p.startswith(("/Volumes/", "/Workspace/", "dbfs:/Volumes/", "s3://", "abfss://", "gs://"))):
        raise TxnwatchError(f"{what} {path} is not a Unity Catalog volume (/Volumes/...), workspace file "
                            "(/Workspace/...) or cloud storage path")


def artifact_paths(cfg: DatabricksConfig, release: Release) -> tuple[str, str]:
    """(entry script, wheel) of a run: the explicit settings when given, else the deployed release's."""
    entry = cfg.entry_script or release.entry_script_path(cfg.artifacts_root)
    wheel = cfg.wheel or release.wheel_path(cfg.artifacts_root)
    check_artifact_path(entry, "entry script")
    check_artifact_path(wheel, "wheel")
    return entry, wheel


def build_submit_payload(*, cfg: DatabricksConfig, release: Release, landing: str, output: str, schema: str,
                         token: str, run_name: str, until_end: bool = True,
                         thresholds: dict | None = None) -> dict[str, Any]:
    """The Jobs API 2.2 `runs/submit` JSON for one detection run."""
    entry_script, wheel = artifact_paths(cfg, release)
    env = {"TXNWATCH_DB_URL": secret_ref(cfg.secret_scope, cfg.db_url_secret_key),
           "TXNWATCH_SPARK_NATIVE_S3": "1",
           "PYSPARK_PYTHON": "/databricks/python3/bin/python3"}
    if cfg.aws_access_key_secret_key and cfg.aws_secret_key_secret_key:
        env["AWS_ACCESS_KEY_ID"] = secret_ref(cfg.secret_scope, cfg.aws_access_key_secret_key)
        env["AWS_SECRET_ACCESS_KEY"] = secret_ref(cfg.secret_scope, cfg.aws_secret_key_secret_key)
    task: dict[str, Any] = {
        "task_key": TASK_KEY,
        "spark_python_task": {
            "python_file": entry_script,
            "parameters": detect_parameters(landing, output, schema, until_end, thresholds),
        },
        "libraries": [{"whl": wheel}, *({"pypi": {"package": p.strip()}}
                                        for p in cfg.pypi_packages.split(",") if p.strip())],
        "timeout_seconds": int(cfg.timeout_seconds),
    }
    if cfg.existing_cluster_id:
        # An existing cluster cannot take per-run env vars: its spark_env_vars must already hold the
        # same secret references (documented in the README).
        task["existing_cluster_id"] = cfg.existing_cluster_id
    else:
        check_runtime(cfg.spark_version)
        cluster: dict[str, Any] = {
            "spark_version": cfg.spark_version,
            "node_type_id": cfg.node_type_id,
            "num_workers": int(cfg.num_workers),
            "spark_env_vars": env,
            "spark_conf": {"spark.sql.shuffle.partitions": "2", **cfg.extra_spark_conf},
        }
        if cfg.instance_profile_arn:
            cluster["aws_attributes"] = {"instance_profile_arn": cfg.instance_profile_arn}
        task["new_cluster"] = cluster
    return {
        "run_name": run_name,
        "tasks": [task],
        "timeout_seconds": int(cfg.timeout_seconds),
        "idempotency_token": token,
    }
