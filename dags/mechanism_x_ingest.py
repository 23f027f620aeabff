"""
### Mechanism X — replay the transactions source into the landing zone

Waits for the source, creates the state tables in PostgreSQL, publishes the customer-importance file,
then runs the **producer**: one long-running task that lands the next `rows_per_chunk` rows as one
immutable chunk every `interval_seconds` until the source is exhausted, then writes `_END.json`.

* Retry-safe: each chunk is checkpointed in Postgres as it lands; a retry resumes at the next chunk.
* Connections: `postgres_default` (state), `aws_default` (when a location is `s3://`).
* Run it together with `mechanism_y_detect` (same `landing` and `schema`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Param, PokeReturnValue, dag, task
from txnwatch_operators import MechanismXProducerOperator

from txnwatch.orchestration import settings as cfg

DEFAULT_ARGS = {
    "owner": "txnwatch",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
}

PARAMS = {
    "source": Param(cfg.DEFAULT_SOURCE, type="string", title="Transactions source",
                    description="CSV of transactions: local path, file://, http(s)://, Google Drive link "
                                "or file id, or s3://bucket/key (canonical or BankSim layout)."),
    "importance": Param(cfg.DEFAULT_IMPORTANCE, type="string", title="Customer importance source",
                        description="Customer importance CSV (same kinds of location as the source)."),
    "landing": Param(cfg.DEFAULT_LANDING, type="string", title="Landing zone",
                     description="Where chunks land: local folder, file:// or s3://bucket/prefix."),
    "rows_per_chunk": Param(10_000, type="integer", minimum=1, title="Rows per chunk",
                            description="Source rows per landed chunk."),
    "interval_seconds": Param(1.0, type="number", minimum=0, title="Interval (s)",
                              description="Seconds between chunks; 0 lands as fast as possible."),
    "max_chunks": Param(None, type=["null", "integer"], minimum=1, title="Max chunks",
                        description="Replay only the first K chunks (empty = the whole source)."),
    "schema": Param(cfg.DEFAULT_SCHEMA, type="string", pattern="^[a-z_][a-z0-9_]{0,62}$",
                    title="Postgres schema", description="Schema holding state and checkpoints."),
}


@dag(
    dag_id=cfg.X_DAG_ID,
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["txnwatch", "mechanism-x", "ingest"],
    template_searchpath=[str(cfg.SQL_DIR)],
)
def mechanism_x_ingest():
    @task
    def s3_inputs(params=None) -> list[str]:
        """The inputs that are S3 objects: watched by the provider's deferrable sensor (one per key)."""
        from txnwatch.orchestration.checks import split_s3

        return split_s3([params["source"], params["importance"]])[0]

    wait_s3 = S3KeySensor.partial(
        task_id="wait_for_s3_source", aws_conn_id=cfg.AWS_CONN_ID, deferrable=cfg.S3_SENSOR_DEFERRABLE,
        mode="poke" if cfg.S3_SENSOR_DEFERRABLE else "reschedule",
        poke_interval=cfg.SENSOR_POKE_S, timeout=cfg.SENSOR_TIMEOUT_S, retries=0,
    ).expand(bucket_key=s3_inputs())

    @task.sensor(poke_interval=cfg.SENSOR_POKE_S, timeout=cfg.SENSOR_TIMEOUT_S, mode="poke", retries=0,
                 trigger_rule="none_failed")
    def wait_for_source(params=None) -> PokeReturnValue:
        """Local, file://, http(s) and Google Drive inputs: poke until every one is readable."""
        from txnwatch.orchestration.checks import source_available, split_s3

        other = split_s3([params["source"], params["importance"]])[1]
        missing = [u for u in other if not source_available(u)]
        return PokeReturnValue(is_done=not missing, xcom_value={"missing": missing})

    create_tables = SQLExecuteQueryOperator(
        task_id="create_state_tables",
        conn_id=cfg.POSTGRES_CONN_ID,
        # One transaction (autocommit off): the file's advisory lock serialises the two DAGs' initialisers.
        sql="init_postgres_tables.sql",
        autocommit=False,
        trigger_rule="none_failed",
    )

    @task
    def publish_importance(params=None) -> str:
        """Publish the importance file, normalised, at `<landing>/_reference/customer_importance.csv`."""
        from txnwatch.orchestration.tasks import publish_importance_file

        return publish_importance_file(params["importance"], params["landing"], cfg.AWS_CONN_ID)

    producer = MechanismXProducerOperator(
        task_id="produce_chunks",
        source="{{ params.source }}",
        importance="{{ params.importance }}",
        landing="{{ params.landing }}",
        rows_per_chunk="{{ params.rows_per_chunk }}",
        interval_seconds="{{ params.interval_seconds }}",
        max_chunks="{{ params.max_chunks }}",
        schema="{{ params.schema }}",
        execution_timeout=timedelta(seconds=cfg.PRODUCER_TIMEOUT_S),
        retries=3,
        retry_delay=timedelta(seconds=5),
    )

    source_ready = wait_for_source()
    [wait_s3, source_ready] >> create_tables >> publish_importance() >> producer


mechanism_x_ingest()
