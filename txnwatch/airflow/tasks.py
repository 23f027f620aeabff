"""Run-time glue of the DAG tasks: hooks and connections in, txnwatch functions out.

Imported inside task callables only (never at DAG parse time), and never imports pyspark.
"""

from __future__ import annotations

import logging
from typing import Any

from txnwatch.airflow.connections import postgres_url, uses_s3

log = logging.getLogger(__name__)


def s3_client_for(aws_conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


def db_url_for(postgres_conn_id: str) -> str:
    return postgres_url(postgres_conn_id)


def publish_importance_file(importance: str, landing: str, aws_conn_id: str) -> str:
    """Publish the normalised importance file with Mechanism X's own publisher; returns its URI."""
    from txnwatch.ingest.job import publish_importance

    client = s3_client_for(aws_conn_id) if uses_s3(importance, landing) else None
    return publish_importance(importance, landing, s3_client=client)


def prepare_default_data(source: str, importance: str) -> str:
    """Generate the demo data set where the X form's default source points, when that is what the run
    asks for and it is missing: so triggering X with the defaults works on a fresh checkout.

    Any other source is the user's: this task then skips (the UI shows it pink), saying why.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from txnwatch.airflow.checks import local_path
    from txnwatch.airflow.settings import DEFAULT_IMPORTANCE, DEFAULT_SOURCE
    from txnwatch.generate import DEMO_ROWS, IMPORTANCE, TRANSACTIONS, ensure_demo_data

    if (source, importance) != (DEFAULT_SOURCE, DEFAULT_IMPORTANCE):
        raise AirflowSkipException("source and importance come from the form, not the defaults: "
                                   "nothing to generate")
    tx, imp = local_path(source), local_path(importance)
    if tx is None or imp is None or (tx.name, imp.name) != (TRANSACTIONS, IMPORTANCE) or tx.parent != imp.parent:
        raise AirflowSkipException(f"the defaults ({source}, {importance}) are not the generated demo files: "
                                   "nothing to generate")
    tx, imp, generated = ensure_demo_data(tx.parent, DEMO_ROWS, say=log.info)
    if not generated:
        raise AirflowSkipException(f"the default data set is already there ({tx.parent}): nothing to generate")
    log.info("generated %s and %s", tx, imp)
    return str(tx)


def inputs_readable(urls: list[str], poke_interval: float, timeout: float) -> bool:
    """One poke of the source sensor: logs what it waits for; a missing local file fails at once.

    A local file does not appear by waiting (a typo in the form is the usual cause), so it fails the task
    with the path in the message instead of polling for an hour; http(s) and S3 sources may be
    published later, so those are waited for.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from txnwatch.airflow.checks import local_path, source_available

    missing_local = [u for u in urls if local_path(u) is not None and not source_available(u)]
    if missing_local:
        raise AirflowFailException(f"no such file: {', '.join(missing_local)}: fix the path in the form "
                                   "(the default source is generated on demand by prepare_default_data)")
    waiting = [u for u in urls if not source_available(u)]
    if waiting:
        log.info("waiting for %s to become readable (checking every %.0fs, giving up after %.0fs)",
                 ", ".join(waiting), poke_interval, timeout)
        return False
    log.info("readable: %s", ", ".join(urls) or "(no local or http inputs: S3 inputs have their own sensor)")
    return True


def prepare_replay(postgres_conn_id: str, aws_conn_id: str, params: dict) -> None:
    """Before Y starts: with `start_over`, clear the schema, landing zone and output; else refuse (fail the
    run, one line) a stream that already finished, instead of resuming it to do nothing (replay.py)."""
    from airflow.sdk.exceptions import AirflowFailException

    from txnwatch.airflow.replay import finished_detection, start_over
    from txnwatch.core.db import connect
    from txnwatch.core.storage import open_store

    schema = params["schema"]
    s3 = s3_client_for(aws_conn_id) if uses_s3(params["landing"], params["output"]) else None
    landing, output = (open_store(params[k], s3, check=False) for k in ("landing", "output"))
    with connect(db_url_for(postgres_conn_id), autocommit=True) as conn:
        if params.get("start_over"):
            for line in start_over(conn, schema, [landing, output]):
                log.info("%s", line)
            return
        reason = finished_detection(conn, schema)
    if reason:
        log.error("%s", reason)  # the run's first log line says what to change; the failure repeats it
        raise AirflowFailException(reason)
    log.info("schema %s, landing %s: a new stream or one to resume", schema, landing.url)


def refuse_finished_landing(db_url: str, schema: str, landing_url: str) -> None:
    """X's side: fail the run (one line) when the landing zone already holds a finished replay."""
    from airflow.sdk.exceptions import AirflowFailException

    from txnwatch.airflow.replay import finished_landing
    from txnwatch.core.db import connect
    from txnwatch.core.storage import open_store

    with connect(db_url, autocommit=True) as conn:
        reason = finished_landing(conn, schema, open_store(landing_url, check=False).url)
    if reason:
        log.error("%s", reason)
        raise AirflowFailException(reason)


def databricks_release_check(cfg: Any, release: Any, databricks_conn_id: str) -> None:
    """Fail unless this code's release is deployed where the payload points (`txnwatch databricks deploy`)."""
    from airflow.providers.databricks.hooks.databricks import DatabricksHook
    from databricks.sdk import WorkspaceClient

    from txnwatch.airflow.connections import databricks_client_args
    from txnwatch.core.errors import TxnwatchError, first_line
    from txnwatch.databricks.deploy import release_deployed

    conn = DatabricksHook.get_connection(databricks_conn_id)
    try:
        deployed = release_deployed(WorkspaceClient(**databricks_client_args(conn)), cfg.artifacts_root, release)
    except Exception as e:  # auth, network, permission: say what failed in one line
        raise TxnwatchError(f"cannot check the release under {cfg.artifacts_root}: {first_line(e, 300)}") from None
    if not deployed:
        raise TxnwatchError(f"txnwatch {release.version} (the code this DAG runs) is not deployed under "
                            f"{cfg.artifacts_root}: run `txnwatch databricks deploy` from this code")
    log.info("Release txnwatch %s is deployed under %s", release.version, cfg.artifacts_root)


def databricks_payload_for_run(params: dict, run_id: str, databricks_conn_id: str) -> dict:
    """The runs/submit JSON for this DAG run, from configuration read now (env, Airflow Variables), pinned
    to the release of the code this DAG runs (checked to be deployed unless explicit paths are set)."""
    from airflow.sdk import Variable

    from txnwatch.core.config import thresholds_from_params
    from txnwatch.databricks.config import databricks_config
    from txnwatch.databricks.payload import build_submit_payload
    from txnwatch.databricks.release import current_release

    def get_variable(name: str, default: Any) -> Any:
        try:
            return Variable.get(name, default)
        except Exception:  # no Variable backend reachable: configuration comes from the environment
            return default

    cfg = databricks_config(get_variable)
    release = current_release()
    # No idempotency token here: the submitting task sets one per try (dags/mechanism_y_detect.py).
    payload = build_submit_payload(cfg=cfg, release=release, landing=params["landing"],
                                   output=params["output"], schema=params["schema"],
                                   run_name=f"txnwatch-detect {run_id}"[:100],
                                   until_end=bool(params.get("until_end", True)),
                                   thresholds=thresholds_from_params(params))
    if not (cfg.wheel and cfg.entry_script):
        databricks_release_check(cfg, release, databricks_conn_id)
    log.info("Databricks payload (secret references only): %s", payload)
    return payload


def report_via_connection(postgres_conn_id: str, schema: str) -> dict:
    """`collect_report` over a connection built from the Airflow Postgres connection; logs the summary."""
    from txnwatch.core.db import connect
    from txnwatch.records.readiness import y_readiness
    from txnwatch.records.report import collect_report
    from txnwatch.records.summary import format_summary

    with connect(db_url_for(postgres_conn_id)) as conn:
        report = collect_report(conn, schema)
        marks = y_readiness(conn, schema)
    report["y_startup_s"] = marks.startup_s if marks else None
    for line in format_summary(report).splitlines():
        log.info("%s", line)
    return report
