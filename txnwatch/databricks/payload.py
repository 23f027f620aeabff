"""The Databricks `runs/submit` payload of Mechanism Y: built at run time, free of secrets.

The payload is the Jobs API 2.2 form: one task (`task_key` "detect") running the Spark entry script as a
`spark_python_task` with the project's wheel, both from the deployed release of this code
(`txnwatch databricks deploy`, see release.py), on one of three computes (`COMPUTES`):
- `job_cluster` (default): a new job cluster in a Unity Catalog access mode, standard by default, which
  Databricks recommends for classic compute; `dedicated` keeps a classic Spark driver. Compute without a
  Unity Catalog access mode cannot read volumes, where the wheel and the entry script live
  (https://docs.databricks.com/aws/en/compute/access-mode-limitations,
  https://docs.databricks.com/aws/en/volumes/). A cluster policy may set the mode instead (`policy`).
- `serverless`: serverless jobs compute, the runs/submit form for serverless tasks: an `environment_key`
  on the task and a top-level `environments` entry holding the dependencies, no cluster and no
  `spark_env_vars` (https://docs.databricks.com/aws/en/jobs/run-serverless-jobs,
  https://docs.databricks.com/api/workspace/jobs/submit). The job reads its database URL from the
  secret scope itself (`--db-secret`).
- `existing_cluster`: a cluster of the workspace, whose Spark environment must hold the secret references.
Standard access mode and serverless run the driver's Python as a Spark Connect client; the job supports
both (spark_session.py). Credentials reach a job cluster as Databricks secret references
(`{{secrets/<scope>/<key>}}` in `spark_env_vars`), resolved on the cluster; the payload never holds a secret.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from txnwatch.core.errors import TxnwatchError
from txnwatch.databricks.config import DatabricksConfig
from txnwatch.databricks.release import Release

TASK_KEY = "detect"
# Databricks Runtime 17.0 is the first with Apache Spark 4 (17.3 LTS: Spark 4.0.0).
MIN_RUNTIME_MAJOR = 17


COMPUTES = ("job_cluster", "serverless", "existing_cluster")
# Access modes of a new job cluster, as the Clusters API names them (databricks-sdk `DataSecurityMode`).
ACCESS_MODES = {"standard": "DATA_SECURITY_MODE_STANDARD", "dedicated": "DATA_SECURITY_MODE_DEDICATED",
                "policy": None}
ENVIRONMENT_KEY = "txnwatch"


def idempotency_token(dag_id: str, run_id: str, task_id: str, try_number: int | str = "") -> str:
    """A token (64 hex chars, Databricks allows at most 64) for one try of one task of one DAG run.

    The same try submitting twice (the provider re-sending a request whose answer was lost) gets the
    run already started; an Airflow retry is a new try and starts a new run. A worker that dies while
    its run is in flight is re-attached to that run by the operator's resumable execution (the run id
    is kept in the task's state store), not by this token.
    """
    raw = "\x1f".join((dag_id, run_id, task_id, str(try_number)))
    return hashlib.sha256(raw.encode()).hexdigest()


def run_token(ti: Any) -> str:
    """The idempotency token of a task instance's current try (a DAG template macro)."""
    return idempotency_token(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)


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


def check_job_location(url: str, what: str, compute: str) -> None:
    """Refuse, in one line, a landing or output location the Databricks job cannot reach.

    The job's driver sees Unity Catalog volumes as local paths (`/Volumes/<catalog>/<schema>/<volume>/...`)
    and reaches S3 with the job cluster's credentials; a path on this machine's disk would leave it
    polling its own empty folder until the run's timeout. Serverless compute reaches cloud storage only
    through Unity Catalog, so there it must be a volume.
    """
    u = url.strip()
    if u.startswith("dbfs:/Volumes/"):
        u = u[len("dbfs:"):]
    if u.startswith("/Volumes/"):
        if len([p for p in u.split("/") if p]) < 4 or ".." in u.split("/"):
            raise TxnwatchError(f"{what} {url} is not a folder in a Unity Catalog volume: use "
                                "/Volumes/<catalog>/<schema>/<volume>/<folder>")
        return
    if u.startswith("s3://") and compute != "serverless":
        return
    if u.startswith("s3://"):
        raise TxnwatchError(f"{what} {url}: serverless compute reaches cloud storage only through Unity Catalog; "
                            "use a volume path (/Volumes/<catalog>/<schema>/<volume>/...) or compute job_cluster")
    raise TxnwatchError(f"{what} {url} is not a place the Databricks job can reach: use a Unity Catalog volume "
                        "(/Volumes/<catalog>/<schema>/<volume>/...) or s3:// (an external location)")


def compute_of(cfg: DatabricksConfig) -> str:
    """The compute a run uses: the setting, else an existing cluster when one is named, else a job cluster."""
    compute = cfg.compute or ("existing_cluster" if cfg.existing_cluster_id else "job_cluster")
    if compute not in COMPUTES:
        raise TxnwatchError(f"TXNWATCH_DATABRICKS_COMPUTE={compute}: use one of {', '.join(COMPUTES)}")
    if compute == "existing_cluster" and not cfg.existing_cluster_id:
        raise TxnwatchError("compute existing_cluster needs TXNWATCH_DATABRICKS_CLUSTER_ID")
    return compute


def _cluster_env(cfg: DatabricksConfig) -> dict[str, str]:
    env = {"TXNWATCH_DB_URL": secret_ref(cfg.secret_scope, cfg.db_url_secret_key),
           "TXNWATCH_SPARK_NATIVE_S3": "1",
           "PYSPARK_PYTHON": "/databricks/python3/bin/python3"}
    if cfg.aws_access_key_secret_key and cfg.aws_secret_key_secret_key:
        env["AWS_ACCESS_KEY_ID"] = secret_ref(cfg.secret_scope, cfg.aws_access_key_secret_key)
        env["AWS_SECRET_ACCESS_KEY"] = secret_ref(cfg.secret_scope, cfg.aws_secret_key_secret_key)
    return env


def _job_cluster(cfg: DatabricksConfig) -> dict[str, Any]:
    check_runtime(cfg.spark_version)
    if cfg.access_mode not in ACCESS_MODES:
        raise TxnwatchError(f"TXNWATCH_DATABRICKS_ACCESS_MODE={cfg.access_mode}: use one of "
                            f"{', '.join(ACCESS_MODES)}")
    if cfg.access_mode == "policy" and not cfg.policy_id:
        raise TxnwatchError("access mode `policy` leaves the access mode to a cluster policy: set "
                            "TXNWATCH_DATABRICKS_POLICY_ID")
    cluster: dict[str, Any] = {
        "spark_version": cfg.spark_version,
        "node_type_id": cfg.node_type_id,
        "num_workers": int(cfg.num_workers),
        "spark_env_vars": _cluster_env(cfg),
        "spark_conf": {"spark.sql.shuffle.partitions": "2", **cfg.extra_spark_conf},
    }
    if ACCESS_MODES[cfg.access_mode]:
        cluster["data_security_mode"] = ACCESS_MODES[cfg.access_mode]
    if cfg.access_mode == "dedicated" and cfg.single_user_name:
        cluster["single_user_name"] = cfg.single_user_name
    if cfg.policy_id:
        cluster["policy_id"] = cfg.policy_id
        cluster["apply_policy_default_values"] = True
    if cfg.instance_profile_arn:
        cluster["aws_attributes"] = {"instance_profile_arn": cfg.instance_profile_arn}
    return cluster


def _pypi(cfg: DatabricksConfig) -> list[str]:
    return [p.strip() for p in cfg.pypi_packages.split(",") if p.strip()]


def build_submit_payload(*, cfg: DatabricksConfig, release: Release, landing: str, output: str, schema: str,
                         run_name: str, token: str | None = None, until_end: bool = True,
                         thresholds: dict | None = None) -> dict[str, Any]:
    """The Jobs API 2.2 `runs/submit` JSON for one detection run (the token is left to the operator when
    None: it covers the submitting task's try, see idempotency_token)."""
    compute = compute_of(cfg)
    check_job_location(landing, "landing", compute)
    check_job_location(output, "output", compute)
    entry_script, wheel = artifact_paths(cfg, release)
    params = detect_parameters(landing, output, schema, until_end, thresholds)
    task: dict[str, Any] = {
        "task_key": TASK_KEY,
        "spark_python_task": {"python_file": entry_script, "parameters": params},
        "timeout_seconds": int(cfg.timeout_seconds),
    }
    payload: dict[str, Any] = {"run_name": run_name, "tasks": [task], "timeout_seconds": int(cfg.timeout_seconds)}
    if compute == "serverless":
        # No cluster, so no spark_env_vars: the job reads the database URL from the secret scope itself.
        params += ["--db-secret", f"{cfg.secret_scope}/{cfg.db_url_secret_key}"]
        task["environment_key"] = ENVIRONMENT_KEY
        payload["environments"] = [{"environment_key": ENVIRONMENT_KEY,
                                    "spec": {"environment_version": str(cfg.environment_version),
                                             "dependencies": [wheel, *_pypi(cfg)]}}]
    else:
        task["libraries"] = [{"whl": wheel}, *({"pypi": {"package": p}} for p in _pypi(cfg))]
        if compute == "existing_cluster":
            # An existing cluster cannot take per-run env vars: its spark_env_vars must already hold the
            # same secret references (documented in docs/databricks.md).
            task["existing_cluster_id"] = cfg.existing_cluster_id
        else:
            task["new_cluster"] = _job_cluster(cfg)
    if token:
        payload["idempotency_token"] = token
    return payload
