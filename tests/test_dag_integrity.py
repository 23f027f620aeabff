"""DagBag integrity: both DAGs import cleanly under the project's Airflow configuration and carry the
metadata operators need (tags, docs, owner, retries, one active run, params with defaults)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.airflow_support import ROOT

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: v for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags), "doc_md": dag.doc_md or "", "max_active_runs": dag.max_active_runs,
        "timetable": type(dag.timetable).__name__, "catchup": dag.catchup,
        "native": dag.render_template_as_native_obj,
        "params": {k: {"default": dag.params.get_param(k).value, "schema": dag.params.get_param(k).schema,
                        "description": dag.params.get_param(k).description} for k in dag.params},
        "tasks": {t.task_id: {"owner": t.owner, "retries": t.retries,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "type": type(t).__name__, "downstream": sorted(t.downstream_task_ids),
                              "mode": (t.partial_kwargs if hasattr(t, "partial_kwargs") else vars(t)).get("mode"),
                              "deferrable": (t.partial_kwargs if hasattr(t, "partial_kwargs")
                                             else vars(t)).get("deferrable"),
                              "doc": t.doc_md or "",
                              "templated": {f: str(getattr(t, f, None)) for f in getattr(t, "template_fields", ())},
                              "trigger_rule": getattr(t.trigger_rule, "value", str(t.trigger_rule))}
                  for t in dag.tasks},
    }
# The Databricks submit task's idempotency token, rendered for tries 1 and 2 through the DAG's own templates.
from types import SimpleNamespace
y = bag.dags["mechanism_y_detect"]
template = y.get_task("run_detect_databricks").idempotency_token
out["token_by_try"] = [y.get_template_env().from_string(template).render(ti=SimpleNamespace(
    dag_id=y.dag_id, run_id="manual__1", task_id="run_detect_databricks", try_number=n)) for n in (1, 2)]
print("PROBE:" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    from txnwatch.local.airflow_home import local_airflow

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
    assert dag["native"] is True  # templated params arrive as ints, bools, dicts: no string coercion
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
    assert params["max_reject_share"]["default"] == 0.5
    assert (params["max_reject_share"]["schema"]["minimum"], params["max_reject_share"]["schema"]["maximum"]) == (0, 1)
    producer = dag["tasks"]["produce_chunks"]
    assert producer["templated"]["max_reject_share"] == "{{ params.max_reject_share }}"
    assert producer["type"] == "MechanismXProducerOperator"
    assert producer["timeout"] and producer["retries"] >= 1
    assert dag["tasks"]["wait_for_s3_source"]["type"] in ("S3KeySensor", "MappedOperator")
    assert "produce_chunks" in dag["tasks"]["publish_importance"]["downstream"]
    assert "publish_importance" in dag["tasks"]["create_state_tables"]["downstream"]
    assert set(dag["tasks"]["prepare_default_data"]["downstream"]) == {"s3_inputs", "wait_for_source"}


def test_x_sensors_free_their_worker_slot_while_waiting(bag):
    tasks = bag["dags"]["mechanism_x_ingest"]["tasks"]
    assert tasks["wait_for_source"]["mode"] == "reschedule"
    s3 = tasks["wait_for_s3_source"]
    assert s3["deferrable"] or s3["mode"] == "reschedule", s3


def test_x_source_defaults_are_the_generated_demo_set(bag):
    from txnwatch.generate import demo_data_dir

    params = bag["dags"]["mechanism_x_ingest"]["params"]
    assert params["source"]["default"] == str(demo_data_dir() / "transactions.csv")
    assert params["importance"]["default"] == str(demo_data_dir() / "customer_importance.csv")
    assert "generated" in params["source"]["description"]


@pytest.mark.parametrize("dag_id", ["mechanism_x_ingest", "mechanism_y_detect"])
def test_every_task_that_can_be_skipped_says_when(bag, dag_id):
    dag = bag["dags"][dag_id]
    skippable = {"mechanism_x_ingest": ["prepare_default_data", "wait_for_s3_source"],
                 "mechanism_y_detect": ["run_detect_local", "run_detect_databricks_payload",
                                        "run_detect_databricks"]}[dag_id]
    for task_id in skippable:
        assert "skipped" in dag["tasks"][task_id]["doc"].lower(), task_id
        assert task_id in dag["doc_md"], task_id


def test_y_params_and_runners(bag):
    dag = bag["dags"]["mechanism_y_detect"]
    params = dag["params"]
    assert {"landing", "output", "runner", "until_end", "schema"} <= set(params)
    assert params["runner"]["default"] == "local"
    assert params["runner"]["schema"]["enum"] == ["local", "databricks"]
    assert params["until_end"]["default"] is True
    tasks = dag["tasks"]
    assert params["start_over"]["default"] is False  # destructive: only when asked
    assert tasks["run_detect_databricks_payload"]["downstream"] == ["run_detect_databricks"]
    assert tasks["run_detect_databricks"]["type"] == "DatabricksSubmitRunOperator"
    assert tasks["run_detect_local"]["type"] == "LocalSparkSubmitOperator"
    assert tasks["report"]["trigger_rule"] == "none_failed_min_one_success"
    assert "report" in tasks["run_detect_local"]["downstream"]
    assert "report" in tasks["run_detect_databricks"]["downstream"]


def test_y_launches_spark_without_waiting_for_the_landing_zone(bag):
    """Y starts together with X, and at once: no task stands before the runner's."""
    tasks = bag["dags"]["mechanism_y_detect"]["tasks"]
    # The local runner is the only root task: no hand-off before Y starts, nothing starting beside it; the
    # Databricks pair runs only when it skipped itself (runner databricks).
    roots = {t for t in tasks if not any(t in v["downstream"] for v in tasks.values())}
    assert roots == {"run_detect_local"}
    assert tasks["run_detect_local"]["downstream"] == ["report", "run_detect_databricks_payload"]
    assert tasks["run_detect_databricks_payload"]["trigger_rule"] == "all_skipped"
    assert not [t for t, v in tasks.items() if "Sensor" in v["type"]]


def test_y_thresholds_param_is_optional_and_lists_every_threshold(bag):
    from dataclasses import fields

    from txnwatch.core.config import Thresholds

    param = bag["dags"]["mechanism_y_detect"]["params"]["thresholds"]
    schema = param["schema"]
    assert param["default"] is None and "null" in schema["type"]  # not a required field in the form
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {f.name for f in fields(Thresholds)}
    for name, prop in schema["properties"].items():
        assert prop["type"] in ("integer", "number") and prop["description"], name
        assert prop["default"] == getattr(Thresholds(), name), name


@pytest.mark.parametrize("value, accepted", [
    (None, True), ({}, True), ({"child_min_txns": 8, "upgrade_weight_percentile": 0.2}, True),
    ({"child_min_txn": 8}, False), ({"child_min_txns": "eight"}, False), ({"child_min_txns": 8.5}, False),
    ({"upgrade_count_percentile": 1.5}, False),
])
def test_y_thresholds_param_refuses_what_the_job_would_refuse(bag, value, accepted):
    import jsonschema

    schema = bag["dags"]["mechanism_y_detect"]["params"]["thresholds"]["schema"]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(value))
    assert (not errors) is accepted, errors


def test_dag_files_do_not_import_pyspark():
    """Code Airflow parses stays free of pyspark (the DAGs, txnwatch.airflow and its operators)."""
    files = [str(ROOT / "dags/mechanism_x_ingest.py"), str(ROOT / "dags/mechanism_y_detect.py")]
    code = ("import runpy, sys\n"
            f"for f in {files!r}: runpy.run_path(f)\n"
            "assert 'pyspark' not in sys.modules, 'pyspark imported at parse time'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_databricks_submit_renders_a_new_idempotency_token_per_try(bag):
    from txnwatch.databricks.payload import idempotency_token

    first, second = bag["token_by_try"]
    assert first == idempotency_token("mechanism_y_detect", "manual__1", "run_detect_databricks", 1)
    assert second == idempotency_token("mechanism_y_detect", "manual__1", "run_detect_databricks", 2)


def test_y_form_has_one_typed_field_per_threshold_in_its_own_section(bag):
    from dataclasses import fields

    from txnwatch.core.config import Thresholds

    params = bag["dags"]["mechanism_y_detect"]["params"]
    for f in fields(Thresholds):
        param = params[f.name]
        schema = param["schema"]
        assert param["default"] == f.default and schema["section"] == "Rule thresholds", f.name
        assert schema["type"] == ("integer" if f.type == "int" else "number") and schema["minimum"] == 0
        assert schema["title"] and param["description"], f.name
        if f.name.endswith("_percentile"):
            assert schema["maximum"] == 1


@pytest.mark.parametrize("params, expected", [
    ({}, {}),  # every field at its default: nothing to override
    ({"child_min_txns": 80, "dei_min_female_customers": 7}, {"dei_min_female_customers": 7}),
    # A script's conf object wins over the fields (which the form always sends).
    ({"child_min_txns": 8, "thresholds": {"child_min_txns": 9}}, {"child_min_txns": 9}),
    ({"child_min_txns": 80, "thresholds": None}, {}),
])
def test_y_run_thresholds_are_the_fields_with_the_conf_object_over_them(params, expected):
    from txnwatch.core.config import thresholds_from_params

    assert thresholds_from_params(params) == expected
