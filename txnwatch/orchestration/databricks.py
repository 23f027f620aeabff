"""The Databricks `runs/submit` payload of Mechanism Y: built at run time, free of secrets.

The payload runs the Spark entry script as a `spark_python_task` with the project's wheel as a library.
Credentials reach the cluster as Databricks secret references (`{{secrets/<scope>/<key>}}` in
`spark_env_vars`), which Databricks resolves on the cluster; the payload itself never holds a secret.
"""

from __future__ import annotations

import hashlib
from typing import Any

from txnwatch.orchestration.settings import DatabricksConfig


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


def build_submit_payload(*, cfg: DatabricksConfig, landing: str, output: str, schema: str,
                         token: str, run_name: str, until_end: bool = True,
                         thresholds: dict | None = None) -> dict[str, Any]:
    """The `runs/submit` JSON for one detection run."""
    env = {"TXNWATCH_DB_URL": secret_ref(cfg.secret_scope, cfg.db_url_secret_key),
           "TXNWATCH_SPARK_NATIVE_S3": "1",
           "PYSPARK_PYTHON": "/databricks/python3/bin/python3"}
    if cfg.aws_access_key_secret_key and cfg.aws_secret_key_secret_key:
        env["AWS_ACCESS_KEY_ID"] = secret_ref(cfg.secret_scope, cfg.aws_access_key_secret_key)
        env["AWS_SECRET_ACCESS_KEY"] = secret_ref(cfg.secret_scope, cfg.aws_secret_key_secret_key)
    payload: dict[str, Any] = {
        "run_name": run_name,
        "spark_python_task": {
            "python_file": cfg.entry_script,
            "parameters": detect_parameters(landing, output, schema, until_end, thresholds),
        },
        "libraries": [{"whl": cfg.wheel}, *({"pypi": {"package": p.strip()}}
                                            for p in cfg.pypi_packages.split(",") if p.strip())],
        "timeout_seconds": int(cfg.timeout_seconds),
        "idempotency_token": token,
    }
    if cfg.existing_cluster_id:
        # An existing cluster cannot take per-run env vars: its spark_env_vars must already hold the
        # same secret references (documented in the README).
        payload["existing_cluster_id"] = cfg.existing_cluster_id
    else:
        cluster: dict[str, Any] = {
            "spark_version": cfg.spark_version,
            "node_type_id": cfg.node_type_id,
            "num_workers": int(cfg.num_workers),
            "spark_env_vars": env,
            "spark_conf": {"spark.sql.shuffle.partitions": "2", **cfg.extra_spark_conf},
        }
        if cfg.instance_profile_arn:
            cluster["aws_attributes"] = {"instance_profile_arn": cfg.instance_profile_arn}
        payload["new_cluster"] = cluster
    return payload
