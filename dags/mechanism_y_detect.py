"""
### Mechanism Y — the Spark detection job

Trigger this DAG **first**, then `mechanism_x_ingest` with the same `landing` and `schema`: the job starts
at once and waits for the landing zone itself, so its Spark start-up overlaps X's instead of adding to
every chunk's lag. Once its Spark session is warm it records a readiness mark in Postgres
(`<schema>.y_checkpoint.ready_at`); `make demo` starts X when it appears.

Tasks, and when each is **skipped** (pink in the grid):

Y starts at once: the local runner's task is the DAG's only root task, and nothing precedes the job but
its replay check. The job creates its state tables itself (`sql/init_postgres_tables.sql`, idempotent).

* `run_detect_local`: with `start_over`, clears the landing zone, output and schema; without it, fails at
  once, saying what to change, when the schema already finished a replay (a stopped stream resumes).
  Then `spark_jobs/detect_job.py` as a Spark Connect client of the stack's standing, warm Spark
  (`TXNWATCH_SPARK_REMOTE`, started by `make airflow-up`, `make demo` and docker-compose), or, when none
  answers, with `spark-submit` and a Spark of its own (the task log says which).
  Skipped when the runner is `databricks`.
* `run_detect_databricks_payload` → `run_detect_databricks`: the same replay check, then
  `DatabricksSubmitRunOperator`, one task
  (Jobs API 2.2) running the same entry script as a `spark_python_task` on Databricks Runtime 17.3 LTS
  (Spark 4) by default, with the project's wheel as a library, both from the release of this code that
  `txnwatch databricks deploy` put in a Unity Catalog volume (checked before submitting), on a job cluster
  in a Unity Catalog access mode, serverless jobs compute or an existing cluster
  (`TXNWATCH_DATABRICKS_COMPUTE`); landing and output must be volume paths or `s3://` (refused before
  submitting otherwise); an idempotency token per try of the task (a retry starts a new run, a worker
  that dies re-attaches to its run), a server-side timeout, credentials from a Databricks secret scope;
  the run is cancelled if the task is killed. Skipped when the runner is `local` (the default).
* `report`: per-chunk lag, detections per pattern and Y's start-up, read from Postgres.

Connections: `postgres_default`, `aws_default` (for `s3://` locations), `databricks_default`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import Param, dag, task

from txnwatch.airflow import settings as cfg
from txnwatch.airflow.operators import LocalSparkSubmitOperator
from txnwatch.core.config import threshold_field_schemas, thresholds_from_params, thresholds_json_schema
from txnwatch.databricks.payload import run_token

DEFAULT_ARGS = {
    "owner": "txnwatch",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
}

RUN_LOCAL = "run_detect_local"
RUN_DATABRICKS = "run_detect_databricks"

PARAMS = {
    "landing": Param(cfg.DEFAULT_LANDING, type="string", minLength=1, title="Landing zone",
                     description="Where Mechanism X lands chunks: local folder, file:// or s3://bucket/prefix. "
                                 "It need not exist yet: the job waits for chunk 1."),
    "output": Param(cfg.DEFAULT_OUTPUT, type="string", minLength=1, title="Output location",
                    description="Where detection files (50 per file) go: local folder, file:// or s3://."),
    "runner": Param("local", type="string", enum=["local", "databricks"], title="Runner",
                    description="local: this machine's Spark (the stack's standing one, else spark-submit); "
                                "databricks: a Databricks job run "
                                "through the databricks_default connection."),
    "start_over": Param(False, type="boolean", title="Start over",
                        description="Clear this landing zone, output and schema first (everything of the "
                                    "previous replay: destructive), then replay from chunk 1. Off: a finished "
                                    "stream fails the run saying so; a stopped one resumes."),
    "until_end": Param(True, type="boolean", title="Stop at the end",
                       description="Exit once the last chunk counted by _END.json is processed "
                                   "(off: keep watching until the task is stopped)."),
    "schema": Param(cfg.DEFAULT_SCHEMA, type="string", pattern="^[a-z_][a-z0-9_]{0,62}$",
                    title="Postgres schema", description="Schema holding state and checkpoints "
                                                         "(the same as Mechanism X's)."),
    # Each rule threshold its own typed field (default, bounds, meaning), in one section of the form.
    **{name: Param(field.pop("default"), section="Rule thresholds", **field)
       for name, field in threshold_field_schemas().items()},
    "thresholds": Param(None, type=["object", "null"], title="Threshold overrides (JSON, for scripts)",
                        section="Advanced",
                        description="For `airflow dags trigger -c '{\"thresholds\": {...}}'` and the REST API: "
                                    "overrides applied over the fields above. Names: "
                                    + ", ".join(thresholds_json_schema()["properties"])
                                    + ". An unknown name is refused.",
                        **{k: v for k, v in thresholds_json_schema().items() if k != "type"}),
}


@dag(
    dag_id=cfg.Y_DAG_ID,
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    render_template_as_native_obj=True,
    tags=["txnwatch", "mechanism-y", "detect", "spark"],
    user_defined_macros={"run_token": run_token, "run_thresholds": thresholds_from_params},
)
def mechanism_y_detect():
    run_local = LocalSparkSubmitOperator(
        task_id=RUN_LOCAL,
        landing="{{ params.landing }}",
        output_location="{{ params.output }}",
        schema="{{ params.schema }}",
        until_end="{{ params.until_end }}",
        thresholds="{{ run_thresholds(params) }}",
        runner="{{ params.runner }}",
        start_over="{{ params.start_over }}",
        execution_timeout=timedelta(seconds=cfg.DETECT_TIMEOUT_S),
        doc_md="The replay check, then the detection job with the local Spark. **Skipped** when the runner is "
               "`databricks`.",
    )

    # Runs only when run_detect_local skipped itself (runner `databricks`): when Y runs locally, the
    # scheduler skips this pair without starting a process beside Y's start-up.
    @task(task_id=RUN_DATABRICKS + "_payload", trigger_rule="all_skipped",
          doc_md="Builds the Databricks runs/submit JSON. **Skipped** when the runner is `local`.")
    def databricks_payload(params=None, dag_run=None) -> dict:
        """The runs/submit JSON (Jobs API 2.2), built at run time from configuration (no secret in it),
        pinned to the deployed release of this code (`txnwatch databricks deploy`); first, start over
        or refuse a finished stream, as the local runner does."""
        from txnwatch.airflow.tasks import databricks_payload_for_run, prepare_replay

        prepare_replay(cfg.POSTGRES_CONN_ID, cfg.AWS_CONN_ID, params)
        return databricks_payload_for_run(params, run_id=dag_run.run_id, databricks_conn_id=cfg.DATABRICKS_CONN_ID)

    payload = databricks_payload()
    run_databricks = DatabricksSubmitRunOperator(
        task_id=RUN_DATABRICKS,
        json=payload,
        databricks_conn_id=cfg.DATABRICKS_CONN_ID,
        # Per try: an Airflow retry starts a new run instead of getting the failed one back.
        idempotency_token="{{ run_token(ti) }}",
        polling_period_seconds=cfg.DATABRICKS_POLL_S,
        deferrable=cfg.DATABRICKS_DEFERRABLE,
        execution_timeout=timedelta(seconds=cfg.DETECT_TIMEOUT_S),
        doc_md="The detection job on Databricks. **Skipped** when the runner is `local`.",
    )

    @task(trigger_rule="none_failed_min_one_success")
    def report(params=None) -> dict:
        """Read the per-chunk metrics and Y's start-up with the Postgres hook and log the summary."""
        from txnwatch.airflow.tasks import report_via_connection

        return report_via_connection(cfg.POSTGRES_CONN_ID, params["schema"])

    # The local runner is the one root task: nothing stands between Trigger and Y's start, and nothing
    # starts beside it. The job creates its state tables itself (txnwatch.db.init_schema, the same SQL).
    run_local >> payload >> run_databricks
    [run_local, run_databricks] >> report()


mechanism_y_detect()
