"""
### Mechanism Y — the Spark detection job

Creates the state tables, waits for the landing zone to start (its first chunk or `_END.json`), then
launches the Spark job on the runner chosen in the form:

* `local` (default): `spark-submit` of `spark_jobs/detect_job.py` with the project's own Spark;
* `databricks`: `DatabricksSubmitRunOperator` — one task (Jobs API 2.2) running the same entry script as a
  `spark_python_task` on Databricks Runtime 17.3 LTS (Spark 4) by default, with the project's wheel as a
  library, both from the release of this code that `txnwatch databricks deploy` put in a Unity Catalog
  volume (checked before submitting); an idempotency token derived from the DAG run, a server-side
  timeout, credentials as Databricks secret references; the run is cancelled if the task is killed.

Afterwards `report` reads the per-chunk metrics from Postgres and logs the summary.
Connections: `postgres_default`, `aws_default` (for `s3://` locations), `databricks_default`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import Param, PokeReturnValue, dag, task
from txnwatch_operators import LocalSparkSubmitOperator

from txnwatch.orchestration import settings as cfg

DEFAULT_ARGS = {
    "owner": "txnwatch",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
}

RUN_LOCAL = "run_detect_local"
RUN_DATABRICKS = "run_detect_databricks"

PARAMS = {
    "landing": Param(cfg.DEFAULT_LANDING, type="string", title="Landing zone",
                     description="Where Mechanism X lands chunks: local folder, file:// or s3://bucket/prefix."),
    "output": Param(cfg.DEFAULT_OUTPUT, type="string", title="Output location",
                    description="Where detection files (50 per file) go: local folder, file:// or s3://."),
    "runner": Param("local", type="string", enum=["local", "databricks"], title="Runner",
                    description="local: spark-submit on this machine; databricks: a Databricks job run "
                                "through the databricks_default connection."),
    "until_end": Param(True, type="boolean", title="Stop at the end",
                       description="Exit once the last chunk counted by _END.json is processed "
                                   "(off: keep watching until the task is stopped)."),
    "schema": Param(cfg.DEFAULT_SCHEMA, type="string", pattern="^[a-z_][a-z0-9_]{0,62}$",
                    title="Postgres schema", description="Schema holding state and checkpoints."),
    "thresholds": Param({}, type="object", title="Rule thresholds",
                        description='Overrides of rule thresholds, e.g. {"child_min_txns": 80}; '
                                    "empty = the specified defaults."),
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
    tags=["txnwatch", "mechanism-y", "detect", "spark"],
    template_searchpath=[str(cfg.SQL_DIR)],
)
def mechanism_y_detect():
    create_tables = SQLExecuteQueryOperator(
        task_id="create_state_tables",
        conn_id=cfg.POSTGRES_CONN_ID,
        # One transaction (autocommit off): the file's advisory lock serialises the two DAGs' initialisers.
        sql="init_postgres_tables.sql",
        autocommit=False,
    )

    @task.sensor(poke_interval=cfg.SENSOR_POKE_S, timeout=cfg.SENSOR_TIMEOUT_S, mode="poke", retries=0)
    def wait_for_landing(params=None) -> PokeReturnValue:
        """Poke until the landing zone holds its first chunk or `_END.json`."""
        from txnwatch.orchestration.tasks import landing_ready_via_connection

        return PokeReturnValue(is_done=landing_ready_via_connection(params["landing"], cfg.AWS_CONN_ID))

    @task.branch
    def choose_runner(params=None) -> str:
        return RUN_DATABRICKS + "_payload" if params["runner"] == "databricks" else RUN_LOCAL

    run_local = LocalSparkSubmitOperator(
        task_id=RUN_LOCAL,
        landing="{{ params.landing }}",
        output_location="{{ params.output }}",
        schema="{{ params.schema }}",
        until_end="{{ params.until_end }}",
        thresholds="{{ params.thresholds | tojson }}",
        execution_timeout=timedelta(seconds=cfg.DETECT_TIMEOUT_S),
    )

    @task(task_id=RUN_DATABRICKS + "_payload")
    def databricks_payload(params=None, dag_run=None) -> dict:
        """The runs/submit JSON (Jobs API 2.2), built at run time from configuration (no secret in it),
        pinned to the deployed release of this code (`txnwatch databricks deploy`)."""
        from txnwatch.orchestration.tasks import databricks_payload_for_run

        return databricks_payload_for_run(params, dag_id=cfg.Y_DAG_ID, run_id=dag_run.run_id,
                                          task_id=RUN_DATABRICKS, databricks_conn_id=cfg.DATABRICKS_CONN_ID)

    payload = databricks_payload()
    run_databricks = DatabricksSubmitRunOperator(
        task_id=RUN_DATABRICKS,
        json=payload,
        databricks_conn_id=cfg.DATABRICKS_CONN_ID,
        polling_period_seconds=cfg.DATABRICKS_POLL_S,
        deferrable=cfg.DATABRICKS_DEFERRABLE,
        execution_timeout=timedelta(seconds=cfg.DETECT_TIMEOUT_S),
    )

    @task(trigger_rule="none_failed_min_one_success")
    def report(params=None) -> dict:
        """Read the per-chunk metrics with the Postgres hook and log the summary."""
        from txnwatch.orchestration.tasks import report_via_connection

        return report_via_connection(cfg.POSTGRES_CONN_ID, params["schema"])

    branch = choose_runner()
    create_tables >> wait_for_landing() >> branch
    branch >> run_local
    branch >> payload >> run_databricks
    [run_local, run_databricks] >> report()


mechanism_y_detect()
