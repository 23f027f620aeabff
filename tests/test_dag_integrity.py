"""DagBag integrity: both DAGs import cleanly under the project's Airflow configuration and carry the
metadata operators need (tags, docs, owner, retries, one active run, params with defaults)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from airflow_support import ROOT

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: v for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags), "doc_md": dag.doc_md or "", "max_active_runs": dag.max_active_runs,
        "timetable": type(dag.timetable).__name__, "catchup": dag.catchup,
        "params": {k: {"default": dag.params.get_param(k).value, "schema": dag.params.get_param(k).schema,
                        "description": dag.params.get_param(k).description} for k in dag.params},
        "tasks": {t.task_id: {"owner": t.owner, "retries": t.retries,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "type": type(t).__name__, "downstream": sorted(t.downstream_task_ids),
                              "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule))}
                  for t in dag.tasks},
    }
print("PROBE:" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    from txnwatch.airflow_local import local_airflow

    home = tmp_path_factory.mktemp("airflow_home")
    # Parsing needs no metadata database: point at one that is never created.
    la = local_airflow(home=home, create=False, state_db_url="postgresql://postgres@127.0.0.1:5432/postgres")
    env = dict(la.env, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///" + str(home / "unused.db"))
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "dags")], env=env, capture_output=True,
                         text=True, timeout=180)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PROBE:")), None)
    assert line, out.stdout[-2000:] + out.stderr[-4000:]
    return json.loads(line[len("PROBE:"):])


def test_dagbag_has_no_import_errors(bag):
    assert bag["errors"] == {}
    assert set(bag["dags"]) == {"mechanism_x_ingest", "mechanism_y_detect"}


@pytest.mark.parametrize("dag_id", ["mechanism_x_ingest", "mechanism_y_detect"])
def test_dag_metadata(bag, dag_id):
    dag = bag["dags"][dag_id]
    assert "txnwatch" in dag["tags"] and len(dag["tags"]) >= 2
    assert dag["doc_md"].strip().startswith("###")
    assert dag["max_active_runs"] == 1
    assert dag["catchup"] is False
    assert dag["timetable"] == "NullTimetable"  # schedule=None: triggered runs only
    for task_id, task in dag["tasks"].items():
        assert task["owner"] == "txnwatch", task_id
        assert task["retries"] is not None, task_id
    for name, param in dag["params"].items():
        assert param["description"], f"{dag_id}.{name} has no description"
        assert "type" in param["schema"], f"{dag_id}.{name} has no type"


def test_x_params_and_producer(bag):
    dag = bag["dags"]["mechanism_x_ingest"]
    params = dag["params"]
    assert {"source", "importance", "landing", "rows_per_chunk", "interval_seconds", "max_chunks",
            "schema"} <= set(params)
    assert params["rows_per_chunk"]["default"] == 10_000
    assert params["interval_seconds"]["default"] == 1.0
    assert params["schema"]["default"] == "txnwatch"
    producer = dag["tasks"]["produce_chunks"]
    assert producer["type"] == "MechanismXProducerOperator"
    assert producer["timeout"] and producer["retries"] >= 1
    assert dag["tasks"]["wait_for_s3_source"]["type"] in ("S3KeySensor", "MappedOperator")
    assert "produce_chunks" in dag["tasks"]["publish_importance"]["downstream"]
    assert "publish_importance" in dag["tasks"]["create_state_tables"]["downstream"]


def test_y_params_and_branch(bag):
    dag = bag["dags"]["mechanism_y_detect"]
    params = dag["params"]
    assert {"landing", "output", "runner", "until_end", "schema"} <= set(params)
    assert params["runner"]["default"] == "local"
    assert params["runner"]["schema"]["enum"] == ["local", "databricks"]
    assert params["until_end"]["default"] is True
    tasks = dag["tasks"]
    assert set(tasks["choose_runner"]["downstream"]) == {"run_detect_local", "run_detect_databricks_payload"}
    assert tasks["run_detect_databricks"]["type"] == "DatabricksSubmitRunOperator"
    assert tasks["run_detect_local"]["type"] == "LocalSparkSubmitOperator"
    assert tasks["report"]["trigger_rule"] == "none_failed_min_one_success"
    assert "report" in tasks["run_detect_local"]["downstream"]
    assert "report" in tasks["run_detect_databricks"]["downstream"]


def test_dag_files_do_not_import_pyspark():
    """Code Airflow parses stays free of pyspark (the DAGs, the plugins, txnwatch.orchestration)."""
    files = [str(ROOT / "dags/mechanism_x_ingest.py"), str(ROOT / "dags/mechanism_y_detect.py")]
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'plugins')!r}); import runpy\n"
            f"for f in {files!r}: runpy.run_path(f)\n"
            "assert 'pyspark' not in sys.modules, 'pyspark imported at parse time'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
