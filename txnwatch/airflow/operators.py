"""Custom operators of txnwatch, in the package (Airflow recommends a regular package for operators).

- `MechanismXProducerOperator`: Mechanism X as one long-running, high-frequency producer task.
- `LocalSparkSubmitOperator`: Mechanism Y with local Spark: the Databricks entry script as a Spark Connect
  client of the stack's standing Spark server, or through `spark-submit` when there is none.

They are thin: the logic is in `txnwatch` (ingest, orchestration.*). Neither imports pyspark. The DAGs
render templates as native objects (`render_template_as_native_obj=True`), so templated fields arrive
as the params' own types (int, float, bool, dict, None); a string where a number or flag belongs means
the DAG renders to text, which is refused with a one-line error rather than guessed at.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from txnwatch.airflow.settings import AWS_CONN_ID, POSTGRES_CONN_ID
from txnwatch.airflow.tasks import db_url_for, s3_client_for
from txnwatch.core import defaults


def _require(name: str, value: Any, kinds: type | tuple[type, ...]) -> Any:
    # bool is an int subclass: a flag where a count belongs is as wrong as text.
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in wanted:
        ok = False
    else:
        ok = isinstance(value, wanted)
    if not ok:
        names = " or ".join("null" if k is type(None) else k.__name__ for k in wanted)
        raise TypeError(f"{name} must be {names}, got {type(value).__name__} {value!r} "
                        "(render the DAG's templates as native objects: render_template_as_native_obj=True)")
    return value


class MechanismXProducerOperator(BaseOperator):
    """Replays the source into the landing zone, one chunk per interval, until the source is exhausted.

    Retry-safe: progress is checkpointed in Postgres with every chunk, so a retried (or killed and
    restarted) task resumes at the next chunk; a finished replay is a no-op. `on_kill` stops the
    producer between chunks.
    """

    template_fields: Sequence[str] = ("source", "importance", "landing", "rows_per_chunk",
                                      "interval_seconds", "max_chunks", "max_reject_share", "schema")
    ui_color = "#e8f4fd"

    def __init__(self, *, source: str, importance: str, landing: str,
                 rows_per_chunk: int | str = defaults.ROWS_PER_CHUNK,
                 interval_seconds: float | str = defaults.INTERVAL_S, max_chunks: int | str | None = None,
                 max_reject_share: float | str = defaults.MAX_REJECT_SHARE, schema: str = defaults.SCHEMA,
                 postgres_conn_id: str = POSTGRES_CONN_ID, aws_conn_id: str = AWS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.importance = importance
        self.landing = landing
        self.rows_per_chunk = rows_per_chunk
        self.interval_seconds = interval_seconds
        self.max_chunks = max_chunks
        self.max_reject_share = max_reject_share
        self.schema = schema
        self.postgres_conn_id = postgres_conn_id
        self.aws_conn_id = aws_conn_id
        self._stop = threading.Event()

    def execute(self, context: Any) -> dict:
        from dataclasses import asdict, is_dataclass

        from txnwatch.airflow.connections import uses_s3
        from txnwatch.airflow.tasks import refuse_finished_landing
        from txnwatch.ingest.job import run_ingest

        rows_per_chunk = _require("rows_per_chunk", self.rows_per_chunk, int)
        interval = float(_require("interval_seconds", self.interval_seconds, (int, float)))
        max_chunks = _require("max_chunks", self.max_chunks, (int, type(None)))
        max_reject_share = float(_require("max_reject_share", self.max_reject_share, (int, float)))
        s3_client = (s3_client_for(self.aws_conn_id)
                     if uses_s3(self.source, self.importance, self.landing) else None)
        self.log.info("Mechanism X: %s -> %s (%s rows per chunk, every %ss, schema %s)", self.source,
                      self.landing, rows_per_chunk, interval, self.schema)
        # A finished landing zone fails the run with what to change, instead of succeeding doing nothing.
        refuse_finished_landing(db_url_for(self.postgres_conn_id), self.schema, self.landing)
        summary = run_ingest(
            source=self.source, importance=self.importance, landing=self.landing,
            db_url=db_url_for(self.postgres_conn_id), schema=self.schema,
            rows_per_chunk=rows_per_chunk, interval=interval, max_chunks=max_chunks,
            s3_client=s3_client, stop=self._stop, max_reject_share=max_reject_share)
        result = asdict(summary) if is_dataclass(summary) else dict(vars(summary))
        self.log.info("Mechanism X done: %s", result)
        if result.get("stopped") and not result.get("finished"):
            raise RuntimeError("Mechanism X was stopped before the source was exhausted")
        return {k: v for k, v in result.items() if isinstance(v, int | float | bool | str | None)}

    def on_kill(self) -> None:
        self.log.info("Stopping Mechanism X after the current chunk")
        self._stop.set()


class LocalSparkSubmitOperator(BaseOperator):
    """Runs the Mechanism Y entry script with local Spark, as Databricks would run it: as a Spark Connect
    client of the standing server TXNWATCH_SPARK_REMOTE names (the local stack's, warm: Y is ready within
    a second or two of starting), or, when none is set or it does not answer, with the venv's
    `spark-submit` (a JVM of its own, several seconds to start).

    The database URL goes to the job in the TXNWATCH_DB_URL environment variable (never argv); S3
    credentials of the AWS connection likewise. Spark's output becomes the task log, one timestamp per
    line and Spark's own level (WARN as WARNING). `on_kill` stops the whole spark-submit process group.
    Skipped unless `runner` is "local"; before the job starts, `start_over` clears the stream or a
    finished stream fails the task (tasks.prepare_replay), in the same task so that no hand-off delays Y.
    """

    template_fields: Sequence[str] = ("landing", "output_location", "schema", "until_end", "thresholds",
                                      "runner", "start_over")
    ui_color = "#fdf2e8"

    def __init__(self, *, landing: str, output_location: str, schema: str = defaults.SCHEMA,
                 until_end: bool | str = True, thresholds: dict | str | None = None, runner: str = "local",
                 start_over: bool | str = False, postgres_conn_id: str = POSTGRES_CONN_ID,
                 aws_conn_id: str = AWS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runner = runner
        self.start_over = start_over
        self.landing = landing
        self.output_location = output_location
        self.schema = schema
        self.until_end = until_end
        self.thresholds = thresholds
        self.postgres_conn_id = postgres_conn_id
        self.aws_conn_id = aws_conn_id
        self._process = None

    def execute(self, context: Any) -> int:
        from txnwatch.airflow.connections import aws_env, uses_s3
        from txnwatch.airflow.local_spark import (
            SparkSubmitProcess,
            connect_client_command,
            log_spark_line,
            spark_submit_command,
            spark_submit_env,
            standing_spark,
        )
        from txnwatch.airflow.settings import REPO_ROOT
        from txnwatch.airflow.tasks import prepare_replay

        if self.runner != "local":
            raise AirflowSkipException(f"runner {self.runner}: Y runs in the Databricks tasks")
        prepare_replay(self.postgres_conn_id, self.aws_conn_id, {
            "schema": self.schema, "landing": self.landing, "output": self.output_location,
            "start_over": _require("start_over", self.start_over, bool)})
        until_end = _require("until_end", self.until_end, bool)
        thresholds = _require("thresholds", self.thresholds, (dict, type(None))) or {}
        extra_env: dict[str, str] = {}
        if uses_s3(self.landing, self.output_location):
            extra_env = aws_env(self.aws_conn_id)
        job = (self.landing, self.output_location, self.schema, until_end, thresholds)
        remote = standing_spark()
        if remote:
            cmd, extra_env["SPARK_REMOTE"] = connect_client_command(*job), remote
            self.log.info("Y as a Spark Connect client of the standing Spark at %s: %s", remote, " ".join(cmd))
        else:
            if os.environ.get("TXNWATCH_SPARK_REMOTE"):
                self.log.warning("The standing Spark at %s does not answer: Y starts its own with spark-submit",
                                 os.environ["TXNWATCH_SPARK_REMOTE"])
            cmd = spark_submit_command(*job)
            self.log.info("spark-submit: %s", " ".join(cmd))
        env = spark_submit_env(db_url_for(self.postgres_conn_id), extra_env)
        self._process = SparkSubmitProcess(cmd, env, cwd=REPO_ROOT)
        code = self._process.run(lambda line: log_spark_line(self.log, line))
        if code != 0:
            raise RuntimeError(f"the detection job exited with code {code}")
        return code

    def on_kill(self) -> None:
        if self._process is not None:
            self.log.info("Stopping spark-submit")
            self._process.stop()
