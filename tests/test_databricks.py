"""The Databricks path of Mechanism Y, for real against a local stand-in of the workspace (Jobs, Files and
Workspace APIs): payload defaults, `txnwatch databricks deploy`, the stand-in's refusals, the DAG end to end.

`pytest -k databricks` selects every test here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile

import pytest

from tests.airflow_support import (
    ARTIFACTS,
    DATA_VOLUME,
    ROOT,
    SECRET_PASSWORD,
    STANDIN_TOKEN,
    airflow_env,
    dags_test_cmd,
    detection_keys,
    read_detections,
    reference_keys,
    standin_client,
    start,
)
from txnwatch.airflow.connections import databricks_client_args
from txnwatch.core.errors import TxnwatchError
from txnwatch.databricks.config import DatabricksConfig, databricks_config
from txnwatch.databricks.deploy import release_deployed
from txnwatch.databricks.payload import build_submit_payload, idempotency_token
from txnwatch.databricks.release import current_release

pytest_plugins = ["tests.airflow_fixtures"]


def test_databricks_idempotency_token_covers_the_try():
    run = ("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00", "run_detect_databricks")
    assert idempotency_token(*run, 1) == idempotency_token(*run, 1)
    assert idempotency_token(*run, 1) != idempotency_token(*run, 2)  # an Airflow retry starts a new run


def test_databricks_submit_task_renders_a_token_per_try():
    from types import SimpleNamespace

    from txnwatch.databricks.payload import run_token

    ti = SimpleNamespace(dag_id="mechanism_y_detect", run_id="manual__1", task_id="run_detect_databricks",
                         try_number=1)
    first = run_token(ti)
    ti.try_number = 2
    assert run_token(ti) != first and len(first) == 64
    # The DAG renders it per try: tests/test_dag_integrity.py.


def test_databricks_idempotency_token_is_stable_and_short():
    a = idempotency_token("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00", "run_detect_databricks")
    assert a == idempotency_token("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00",
                                  "run_detect_databricks")
    assert len(a) <= 64
    assert a != idempotency_token("mechanism_y_detect", "manual__2025-07-05T12:00:00+00:00",
                                  "run_detect_databricks")
    assert a != idempotency_token("mechanism_y_detect", "manual__2025-07-04T12:00:00+00:00", "other")
    long_run_id = "manual__" + "x" * 500
    assert len(idempotency_token("d" * 250, long_run_id, "t" * 250)) <= 64


def _release_payload(cfg: DatabricksConfig | None = None, **kwargs) -> dict:
    defaults = dict(landing="s3://bank/landing", output="s3://bank/output", schema="txnwatch", token="t" * 64,
                    run_name="r")
    return build_submit_payload(cfg=cfg or databricks_config(), release=current_release(),
                                **{**defaults, **kwargs})


def test_databricks_payload_defaults_run_on_spark_4_from_a_volume(monkeypatch):
    for key in ("ARTIFACTS", "WHEEL", "ENTRY_SCRIPT", "SPARK_VERSION", "CLUSTER_ID", "COMPUTE", "ACCESS_MODE",
                "POLICY_ID"):
        monkeypatch.delenv(f"TXNWATCH_DATABRICKS_{key}", raising=False)
    payload = _release_payload()
    release = current_release()
    # Jobs API 2.2: the top level holds the run, the task holds the work.
    assert set(payload) == {"run_name", "tasks", "timeout_seconds", "idempotency_token"}
    [task] = payload["tasks"]
    assert task["task_key"] == "detect"
    assert task["new_cluster"]["spark_version"] == "17.3.x-scala2.13"  # Databricks Runtime 17.3 LTS: Spark 4.0.0
    # A Unity Catalog access mode, or the wheel and script in the volume could not be read.
    assert task["new_cluster"]["data_security_mode"] == "DATA_SECURITY_MODE_STANDARD"
    folder = f"/Volumes/main/txnwatch/artifacts/txnwatch-{release.version}"
    assert task["spark_python_task"]["python_file"] == f"{folder}/detect_job.py"
    assert task["libraries"][0] == {"whl": f"{folder}/{release.wheel_name}"}
    assert "dbfs:" not in json.dumps(payload)
    assert re.fullmatch(r"\d+\.\d+\.\d+\+h[0-9a-f]{12}", release.version)


def test_databricks_payload_has_secret_references_only(monkeypatch):
    monkeypatch.setenv("TXNWATCH_DATABRICKS_AWS_KEY_ID_SECRET", "aws_key_id")
    monkeypatch.setenv("TXNWATCH_DATABRICKS_AWS_SECRET_SECRET", "aws_secret")
    monkeypatch.setenv("TXNWATCH_DATABRICKS_NUM_WORKERS", "2")
    payload = _release_payload(thresholds={"child_min_txns": 80})
    [task] = payload["tasks"]
    params = task["spark_python_task"]["parameters"]
    assert params[:6] == ["--landing", "s3://bank/landing", "--output", "s3://bank/output", "--schema", "txnwatch"]
    assert "--until-end" in params and "child_min_txns=80" in params
    assert task["libraries"] == [{"whl": current_release().wheel_path(DatabricksConfig().artifacts_root)}]
    assert payload["timeout_seconds"] > 0 and task["timeout_seconds"] > 0 and payload["idempotency_token"] == "t" * 64
    env = task["new_cluster"]["spark_env_vars"]
    assert env["TXNWATCH_DB_URL"] == "{{secrets/txnwatch/db_url}}"
    assert env["AWS_SECRET_ACCESS_KEY"] == "{{secrets/txnwatch/aws_secret}}"
    assert task["new_cluster"]["num_workers"] == 2
    text = json.dumps(payload)
    assert "postgresql://" not in text and "--db" not in text and "password" not in text.lower()


def test_databricks_payload_existing_cluster(monkeypatch):
    monkeypatch.setenv("TXNWATCH_DATABRICKS_CLUSTER_ID", "0704-120000-abcd")
    [task] = _release_payload()["tasks"]
    assert task["existing_cluster_id"] == "0704-120000-abcd" and "new_cluster" not in task


def test_databricks_config_from_airflow_variables(monkeypatch):
    monkeypatch.delenv("TXNWATCH_DATABRICKS_ARTIFACTS", raising=False)
    monkeypatch.delenv("TXNWATCH_DATABRICKS_SPARK_VERSION", raising=False)
    variables = {"txnwatch_databricks_artifacts": "/Workspace/Shared/txnwatch",
                 "txnwatch_databricks_spark_version": "18.x-scala2.13"}
    cfg = databricks_config(lambda name, default: variables.get(name, default))
    assert cfg.artifacts_root == "/Workspace/Shared/txnwatch" and cfg.spark_version == "18.x-scala2.13"
    [task] = _release_payload(cfg)["tasks"]
    assert task["spark_python_task"]["python_file"].startswith("/Workspace/Shared/txnwatch/txnwatch-")
    assert DatabricksConfig().secret_scope == "txnwatch"


def test_databricks_explicit_paths_override_the_release():
    cfg = DatabricksConfig(wheel="/Volumes/c/s/v/w.whl", entry_script="/Workspace/Shared/job.py")
    [task] = _release_payload(cfg)["tasks"]
    assert task["libraries"][0] == {"whl": "/Volumes/c/s/v/w.whl"}
    assert task["spark_python_task"]["python_file"] == "/Workspace/Shared/job.py"


def test_databricks_payload_serverless_uses_an_environment_and_reads_its_secret(monkeypatch):
    monkeypatch.setenv("TXNWATCH_DATABRICKS_COMPUTE", "serverless")
    payload = _release_payload(landing="/Volumes/main/txnwatch/data/landing",
                               output="/Volumes/main/txnwatch/data/output")
    [task] = payload["tasks"]
    assert not {"new_cluster", "existing_cluster_id", "libraries"} & set(task)
    [env] = payload["environments"]
    assert task["environment_key"] == env["environment_key"]
    deps = env["spec"]["dependencies"]
    assert deps[0] == current_release().wheel_path(DatabricksConfig().artifacts_root)
    assert len(deps) == 1 and env["spec"]["environment_version"] == "4"  # the wheel brings its dependencies
    params = task["spark_python_task"]["parameters"]
    assert params[params.index("--db-secret") + 1] == "txnwatch/db_url"
    assert "spark_env_vars" not in json.dumps(payload) and "postgresql://" not in json.dumps(payload)


@pytest.mark.parametrize("mode, expected", [("dedicated", "DATA_SECURITY_MODE_DEDICATED"), ("policy", None)])
def test_databricks_payload_access_mode_or_policy(mode, expected):
    cfg = DatabricksConfig(access_mode=mode, policy_id="ABC123", single_user_name="etl@bank.example")
    cluster = _release_payload(cfg)["tasks"][0]["new_cluster"]
    assert cluster.get("data_security_mode") == expected
    assert cluster["policy_id"] == "ABC123" and cluster["apply_policy_default_values"] is True
    assert ("single_user_name" in cluster) == (mode == "dedicated")


def test_databricks_payload_refuses_a_policy_mode_without_a_policy():
    with pytest.raises(TxnwatchError, match="TXNWATCH_DATABRICKS_POLICY_ID"):
        _release_payload(DatabricksConfig(access_mode="policy"))


@pytest.mark.parametrize("compute, landing, message", [
    ("job_cluster", "/tmp/landing", "is not a place the Databricks job can reach"),
    ("job_cluster", "file:///tmp/landing", "is not a place the Databricks job can reach"),
    ("job_cluster", "/Volumes/main/txnwatch", "is not a folder in a Unity Catalog volume"),
    ("serverless", "s3://bank/landing", "serverless compute reaches cloud storage only through Unity Catalog"),
])
def test_databricks_payload_refuses_a_location_the_job_cannot_reach(compute, landing, message):
    with pytest.raises(TxnwatchError, match=message) as e:
        _release_payload(DatabricksConfig(compute=compute), landing=landing,
                         output="/Volumes/main/txnwatch/data/output")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spark_version", ["16.4.x-scala2.13", "15.4.x-scala2.12"])
def test_databricks_payload_refuses_a_runtime_without_spark_4(spark_version):
    with pytest.raises(TxnwatchError, match="needs Spark >= 4.0: use 17.3.x-scala2.13"):
        _release_payload(DatabricksConfig(spark_version=spark_version))


@pytest.mark.parametrize("setting", ["wheel", "entry_script"])
def test_databricks_payload_refuses_the_dbfs_root(setting):
    cfg = DatabricksConfig(**{setting: "dbfs:/txnwatch/dist/x" + (".whl" if setting == "wheel" else ".py")})
    with pytest.raises(TxnwatchError, match="DBFS root"):
        _release_payload(cfg)


def test_databricks_wheel_holds_the_library_not_the_developer_tools(release_wheel):
    release, wheel = release_wheel
    assert wheel.name == release.wheel_name
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"txnwatch/cli.py", "txnwatch/detect/runtime.py", "txnwatch/detect/job.py", "txnwatch/core/db.py",
            "txnwatch/detect/secrets.py", "txnwatch/core/volumes.py", "txnwatch/sql/init_postgres_tables.sql"} <= names
    assert not [n for n in names if n.startswith(("txnwatch/databricks/", "txnwatch/airflow/", "txnwatch/local/",
                                                  "txnwatch/ingest/", "txnwatch/records/", "txnwatch/generate.py",
                                                  "txnwatch/core/embedded_pg.py", "txnwatch/sql/records.sql"))]
    assert "txnwatch/detect/faults.py" not in names  # no test hooks in the library
    metadata = zipfile.ZipFile(wheel).read(f"txnwatch-{release.version}.dist-info/METADATA").decode()
    assert f"Version: {release.version}" in metadata
    # It declares what it needs beyond the runtime, pinned as tested (.venv-dbr), and nothing the runtime has.
    requires = sorted(line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist"))
    assert requires == ["psycopg[binary]==3.3.9", "tenacity==9.2.1"]
    dbr_pins = (ROOT / "requirements-dbr.txt").read_text().splitlines()
    assert all(r in dbr_pins for r in requires)


def test_databricks_release_version_follows_the_shipped_code(tmp_path, monkeypatch):
    import shutil

    from txnwatch.databricks import release as rel

    package = tmp_path / "txnwatch"
    shutil.copytree(rel.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(rel, "PACKAGE_DIR", package)
    before = rel.current_release().version
    (package / "airflow" / "tasks.py").write_text("# a developer tool: not shipped\n")
    assert rel.current_release().version == before
    shipped = package / "detect" / "live_state.py"
    shipped.write_text(shipped.read_text() + "\n# changed\n")
    after = rel.current_release().version
    assert after != before and after.split("+")[0] == before.split("+")[0] == rel.package_version()


@pytest.mark.parametrize("conn, expected", [
    (dict(host="127.0.0.1", port=8443, schema="http", password="tok"),
     {"host": "http://127.0.0.1:8443", "token": "tok", "auth_type": "pat"}),
    (dict(host="https://adb-1.azuredatabricks.net/", extra={"token": "tok"}),
     {"host": "https://adb-1.azuredatabricks.net", "token": "tok", "auth_type": "pat"}),
    (dict(host="ws.cloud.databricks.com", login="sp-id", password="sp-secret",
          extra={"service_principal_oauth": True}),
     {"host": "https://ws.cloud.databricks.com", "client_id": "sp-id", "client_secret": "sp-secret",
      "auth_type": "oauth-m2m"}),
])
def test_databricks_client_args_from_the_airflow_connection(conn, expected):
    from types import SimpleNamespace

    fields = {"host": None, "port": None, "schema": None, "login": None, "password": None, **conn}
    c = SimpleNamespace(extra_dejson=fields.pop("extra", {}), **fields)
    assert databricks_client_args(c) == expected


# ---- deploy, against the workspace stand-in with the official databricks-sdk ------------------------

def _deploy_cli(standin, *args: str, token: str = STANDIN_TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env.update(DATABRICKS_HOST=f"http://127.0.0.1:{standin.server.server_address[1]}", DATABRICKS_TOKEN=token,
               DATABRICKS_CONFIG_FILE=os.devnull)
    return subprocess.run([sys.executable, "-m", "txnwatch", "databricks", "deploy", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_databricks_deploy_uploads_the_release_to_a_volume(databricks_standin):
    standin, _ = databricks_standin
    out = _deploy_cli(standin)
    assert out.returncode == 0, out.stderr
    release = current_release()
    folder = f"{ARTIFACTS}/txnwatch-{release.version}"
    assert f"deployed txnwatch {release.version}" in out.stdout
    manifest = json.loads(standin.files.local_path(f"{folder}/release.json").read_bytes())
    wheel = standin.files.local_path(f"{folder}/{release.wheel_name}").read_bytes()
    script = standin.files.local_path(f"{folder}/detect_job.py").read_bytes()
    assert manifest["version"] == release.version and manifest["wheel"] == f"{folder}/{release.wheel_name}"
    assert manifest["wheel_sha256"] == hashlib.sha256(wheel).hexdigest()
    assert script == (ROOT / "spark_jobs" / "detect_job.py").read_bytes()
    # Through the Files API, the manifest last (a folder with a manifest is a complete release).
    puts = [p for p in standin.endpoints_called() if p.startswith("PUT /api/2.0/fs/files/")]
    assert len(puts) == 3 and puts[-1].endswith("release.json")
    assert release_deployed(standin_client(standin), ARTIFACTS, release)


def test_databricks_deploy_to_workspace_files(databricks_standin):
    standin, _ = databricks_standin
    out = _deploy_cli(standin, "--artifacts", "/Workspace/Shared/txnwatch")
    assert out.returncode == 0, out.stderr
    release = current_release()
    assert standin.files.local_path(f"/Workspace/Shared/txnwatch/txnwatch-{release.version}/{release.wheel_name}"
                                    ).is_file()
    assert "POST /api/2.0/workspace/import" in standin.endpoints_called()
    assert release_deployed(standin_client(standin), "/Workspace/Shared/txnwatch", release)
    assert not release_deployed(standin_client(standin), ARTIFACTS, release)


@pytest.mark.parametrize("artifacts, message", [
    ("/Volumes/main/missing/artifacts", "Volume main.missing.artifacts does not exist"),
    ("dbfs:/txnwatch/dist", "must be a Unity Catalog volume path"),
])
def test_databricks_deploy_to_a_bad_place_is_one_line(databricks_standin, artifacts, message):
    standin, _ = databricks_standin
    out = _deploy_cli(standin, "--artifacts", artifacts)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_databricks_deploy_with_a_bad_token_is_one_line(databricks_standin):
    standin, _ = databricks_standin
    out = _deploy_cli(standin, token="not-the-token")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad token" in lines[0] and "not-the-token" not in out.stderr, out.stderr


# ---- the stand-in refuses what Databricks refuses -----------------------------------------------------

def _submit(standin, payload: dict) -> dict:
    return standin_client(standin).api_client.do("POST", "/api/2.2/jobs/runs/submit", body=payload)


def _task(**overrides) -> dict:
    task = {"task_key": "detect", "spark_python_task": {"python_file": f"{ARTIFACTS}/job.py"},
            "new_cluster": {"spark_version": "17.3.x-scala2.13", "node_type_id": "i3.xlarge", "num_workers": 1}}
    task.update(overrides)
    return {k: v for k, v in task.items() if v is not None}


@pytest.mark.parametrize("payload, message", [
    # The Jobs API 2.0 single-task form: its fields are not top-level fields of runs/submit in 2.2.
    ({"run_name": "r", "spark_python_task": {"python_file": f"{ARTIFACTS}/job.py"},
      "new_cluster": {"spark_version": "17.3.x-scala2.13"}}, "Unknown field 'new_cluster' in the request"),
    ({"run_name": "r", "tasks": [_task()], "cluster_name": "x"}, "Unknown field 'cluster_name'"),
    ({"run_name": "r", "tasks": [_task(task_key=None)]}, "tasks[0].task_key is required"),
    ({"run_name": "r", "tasks": [_task(spark_version="x")]}, "Unknown field 'spark_version' in tasks[0]"),
    ({"run_name": "r", "tasks": [_task(new_cluster={"spark_version": "17.3.x-scala2.12"})]},
     "Invalid spark version '17.3.x-scala2.12'"),
    # Serverless: an environment, not libraries; a known access mode, policy and cluster.
    ({"run_name": "r", "tasks": [_task(new_cluster=None)]}, "needs environment_key"),
    ({"run_name": "r", "tasks": [_task(new_cluster=None, environment_key="e")]}, "names no entry of environments"),
    ({"run_name": "r",
      "tasks": [_task(new_cluster=None, environment_key="e", libraries=[{"whl": "/Volumes/a/b/c/w.whl"}])],
      "environments": [{"environment_key": "e", "spec": {"environment_version": "4"}}]},
     "libraries are not supported for serverless tasks"),
    ({"run_name": "r", "tasks": [_task(new_cluster=None, environment_key="e")],
      "environments": [{"environment_key": "e", "spec": {"environment_version": "9"}}]},
     "unknown environment_version '9'"),
    ({"run_name": "r", "tasks": [_task(new_cluster={"spark_version": "17.3.x-scala2.13",
                                                     "data_security_mode": "SHARED"})]},
     "Invalid data_security_mode 'SHARED'"),
    ({"run_name": "r", "tasks": [_task(new_cluster={"spark_version": "17.3.x-scala2.13", "policy_id": "nope"})]},
     "Cluster policy nope does not exist"),
    ({"run_name": "r", "tasks": [_task(new_cluster=None, existing_cluster_id="0000-nope")]},
     "Cluster 0000-nope does not exist"),
])
def test_databricks_standin_refuses_what_databricks_refuses(databricks_standin, payload, message):
    from databricks.sdk.errors import InvalidParameterValue

    standin, _ = databricks_standin
    with pytest.raises(InvalidParameterValue, match=re.escape(message)):
        _submit(standin, payload)
    assert not standin.runs


def _wait_for_end(standin, run_id: int, timeout: float = 240) -> dict:
    from tests.helpers import wait_for

    return wait_for(lambda: (s := standin.describe(standin.runs[run_id])["state"]).get("result_state") and s,
                    timeout=timeout, what=f"run {run_id} to end")


def test_databricks_standin_fails_a_dbfs_root_library(databricks_standin, deployed_release):
    standin, _ = databricks_standin
    task = _task(libraries=[{"whl": "dbfs:/txnwatch/dist/txnwatch-0.1.0-py3-none-any.whl"}])
    task["spark_python_task"]["python_file"] = deployed_release.entry_script_path(ARTIFACTS)
    run_id = _submit(standin, {"run_name": "r", "tasks": [task]})["run_id"]
    state = _wait_for_end(standin, run_id)
    assert state["life_cycle_state"] == "INTERNAL_ERROR" and state["result_state"] == "FAILED"
    assert "Library installation failed" in state["state_message"] and "DBFS root" in state["state_message"]
    assert standin.runs[run_id].proc is None  # the task never started


@pytest.mark.parametrize("compute", [
    {"new_cluster": {"spark_version": "17.3.x-scala2.13"}},  # no access mode: the workspace default
    {"new_cluster": {"spark_version": "17.3.x-scala2.13", "data_security_mode": "NONE"}},
    {"new_cluster": {"spark_version": "17.3.x-scala2.13", "data_security_mode": "LEGACY_SINGLE_USER_STANDARD"}},
    {"new_cluster": {"spark_version": "17.3.x-scala2.13", "policy_id": "no-isolation"}},
    {"existing_cluster_id": "0704-120000-noiso"},
])
def test_databricks_standin_fails_volumes_on_compute_without_unity_catalog(databricks_standin, deployed_release,
                                                                          compute):
    standin, _ = databricks_standin
    task = _task(**{"new_cluster": None, **compute}, libraries=[{"whl": deployed_release.wheel_path(ARTIFACTS)}])
    task["spark_python_task"]["python_file"] = deployed_release.entry_script_path(ARTIFACTS)
    run_id = _submit(standin, {"run_name": "r", "tasks": [task]})["run_id"]
    state = _wait_for_end(standin, run_id)
    assert state["result_state"] == "FAILED" and "without a Unity Catalog access mode" in state["state_message"]
    assert standin.runs[run_id].proc is None


def test_databricks_same_try_gets_its_run_back_and_a_retry_starts_a_new_one(databricks_standin):
    from types import SimpleNamespace

    from txnwatch.databricks.payload import run_token

    standin, _ = databricks_standin
    ti = SimpleNamespace(dag_id="mechanism_y_detect", run_id="manual__1", task_id="run_detect_databricks",
                         try_number=1)
    # A task that fails at once (no such script): the retry must not get this failed run back.
    task = _task(new_cluster={"spark_version": "17.3.x-scala2.13",
                              "data_security_mode": "DATA_SECURITY_MODE_DEDICATED"})
    body = {"run_name": "r", "tasks": [task], "idempotency_token": run_token(ti)}
    first, again = _submit(standin, body)["run_id"], _submit(standin, body)["run_id"]
    assert first == again and _wait_for_end(standin, first)["result_state"] == "FAILED"
    ti.try_number = 2
    retry = _submit(standin, {**body, "idempotency_token": run_token(ti)})["run_id"]
    assert retry != first and len(standin.runs) == 2


@pytest.mark.slow
def test_databricks_standin_fails_a_runtime_older_than_spark_4(databricks_standin, deployed_release, tmp_path,
                                                              schema):
    standin, _ = databricks_standin
    # A payload built by hand: build_submit_payload itself refuses runtime 16.4.
    task = _task(libraries=[{"whl": deployed_release.wheel_path(ARTIFACTS)}])
    task["new_cluster"]["spark_version"] = "16.4.x-scala2.13"  # Databricks Runtime 16.4 LTS: Spark 3.5.2
    task["new_cluster"]["data_security_mode"] = "DATA_SECURITY_MODE_DEDICATED"
    task["spark_python_task"] = {"python_file": deployed_release.entry_script_path(ARTIFACTS),
                                 "parameters": ["--landing", str(tmp_path / "l"), "--output", str(tmp_path / "o"),
                                                "--schema", schema]}
    run_id = _submit(standin, {"run_name": "r", "tasks": [task]})["run_id"]
    state = _wait_for_end(standin, run_id)
    assert state["result_state"] == "FAILED", state
    log = "\n".join(standin.runs[run_id].log)
    assert "txnwatch detect: error: this job needs Spark >= 4.0, found Spark 3.5.2" in log
    assert "Traceback" not in log and not (tmp_path / "o").exists()


def _land(dataset, landing, pg_server_url, schema, rows_per_chunk=5000):
    from txnwatch.ingest.job import run_ingest

    summary = run_ingest(dataset["source"], dataset["importance"], str(landing), pg_server_url,
                         schema=schema, rows_per_chunk=rows_per_chunk, interval=0)
    assert summary.finished


@pytest.fixture
def volume_dirs(databricks_standin, monkeypatch):
    """(landing, output): fresh folders of the stand-in's data volume, as Databricks paths. This process is
    "off Databricks": it reaches them through the Files API, with the SDK's environment credentials."""
    import uuid

    standin, _ = databricks_standin
    monkeypatch.setenv("DATABRICKS_HOST", standin.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", STANDIN_TOKEN)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    base = f"{DATA_VOLUME}/{uuid.uuid4().hex[:8]}"
    return f"{base}/landing", f"{base}/output"


@pytest.fixture
def two_schemas(pg_server_url):
    import uuid

    from txnwatch.core.db import connect

    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield names
    with connect(pg_server_url, autocommit=True) as conn:
        for n in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {n} CASCADE")


@pytest.mark.slow
def test_databricks_dags_test_runs_the_job_on_the_standin(airflow_local, databricks_standin, deployed_release,
                                                          small_dataset, pg_server_url, tmp_path, two_schemas,
                                                          volume_dirs):
    standin, db_env = databricks_standin
    schema = two_schemas[0]
    landing, output = volume_dirs
    # X lands into the volume through the Files API; the job reads it as a local path on its "cluster".
    _land(small_dataset, landing, pg_server_url, schema)
    assert any(p.startswith("/api/2.0/fs/files/Volumes/") for _, p, _ in standin.calls)
    conf = {"landing": landing, "output": output, "runner": "databricks", "schema": schema,
            "until_end": True, "thresholds": small_dataset["thresholds"]}
    # Deferrable mode: the run is watched by the provider's trigger (run inline by `dags test`).
    env = airflow_env(airflow_local, pg_server_url, **db_env, TXNWATCH_DATABRICKS_DEFERRABLE="1")
    log = tmp_path / "dags_test.log"
    t0 = time.monotonic()
    proc = start(dags_test_cmd(airflow_local, "mechanism_y_detect", conf), env, log)
    proc.wait(480)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-5000:]
    print(f"dags test (databricks runner) took {time.monotonic() - t0:.1f}s")

    [payload] = standin.submitted()
    assert any(p.endswith("/jobs/runs/submit") and p.startswith("POST /api/2.2/")
               for p in standin.endpoints_called())
    [task] = payload["tasks"]
    # The deployed release of this code, on a Spark 4 runtime; the job ran from the uploaded wheel.
    assert task["spark_python_task"]["python_file"] == deployed_release.entry_script_path(ARTIFACTS)
    assert task["libraries"][0] == {"whl": deployed_release.wheel_path(ARTIFACTS)}
    assert task["new_cluster"]["spark_version"] == "17.3.x-scala2.13"
    assert task["new_cluster"]["spark_env_vars"]["TXNWATCH_DB_URL"] == "{{secrets/txnwatch/db_url}}"
    assert task["new_cluster"]["data_security_mode"] == "DATA_SECURITY_MODE_STANDARD"
    assert len(payload["idempotency_token"]) == 64  # rendered per try by the submitting task
    assert all(r.result_state == "SUCCESS" for r in standin.runs.values())
    # Standard access mode: the job ran as a Spark Connect client.
    assert [r.mode for r in standin.runs.values()] == ["connect"]
    # No secret anywhere: not in the submitted payload, not in the task logs.
    assert SECRET_PASSWORD not in json.dumps(payload)
    assert SECRET_PASSWORD not in text and STANDIN_TOKEN not in text
    for f in airflow_local.home.joinpath("logs").rglob("*"):
        if f.is_file():
            body = f.read_text(errors="replace")
            assert SECRET_PASSWORD not in body and STANDIN_TOKEN not in body, f

    got = detection_keys(read_detections(standin.files.local_path(output)))
    assert got, "no detections: thresholds too high for the small data set?"
    assert got == reference_keys(standin.files.local_path(landing), small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}


@pytest.mark.slow
def test_databricks_serverless_task_runs_as_a_connect_client(databricks_standin, deployed_release, small_dataset,
                                                             pg_server_url, schema, volume_dirs):
    standin, _ = databricks_standin
    landing, output = volume_dirs
    _land(small_dataset, landing, pg_server_url, schema)
    cfg = DatabricksConfig(artifacts_root=ARTIFACTS, compute="serverless")
    payload = build_submit_payload(cfg=cfg, release=current_release(), landing=landing, output=output,
                                   schema=schema, run_name="serverless", thresholds=small_dataset["thresholds"],
                                   token=idempotency_token("d", str(time.time()), "t", 1))
    run_id = _submit(standin, payload)["run_id"]
    state = _wait_for_end(standin, run_id)
    run = standin.runs[run_id]
    assert state["result_state"] == "SUCCESS", (state, "\n".join(run.log[-40:]))
    assert run.mode == "connect" and "Spark Connect client of sc://127.0.0.1:" in "\n".join(run.log)
    # No cluster environment: the job read the database URL from the secret scope itself.
    assert ("GET", "/api/2.0/secrets/get", {"scope": "txnwatch", "key": "db_url"}) in standin.calls
    assert SECRET_PASSWORD not in json.dumps(payload) and SECRET_PASSWORD not in "\n".join(run.log)
    got = detection_keys(read_detections(standin.files.local_path(output)))
    assert got and got == reference_keys(standin.files.local_path(landing), small_dataset["thresholds"])


def _probe_cmd(mode: str, payload: dict, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "tests" / "airflow_databricks_probe.py"), mode, json.dumps(payload), *extra]


def _probe(la, pg_server_url, db_env, mode: str, payload: dict, *extra: str) -> dict:
    env = airflow_env(la, pg_server_url, **db_env)
    out = subprocess.run(_probe_cmd(mode, payload, *extra), env=env, capture_output=True, text=True, timeout=400)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT:")), None)
    assert line, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(line[len("RESULT:"):])


def _payload(landing, output, schema, **cfg_overrides) -> dict:
    cfg = DatabricksConfig(artifacts_root=ARTIFACTS, **cfg_overrides)
    return build_submit_payload(cfg=cfg, release=current_release(), landing=str(landing), output=str(output),
                                schema=schema, token=idempotency_token("d", str(time.time()), "t", 1),
                                run_name="probe")


def test_databricks_dag_refuses_a_release_that_is_not_deployed(airflow_local, databricks_standin,
                                                               pg_server_url):
    standin, db_env = databricks_standin
    code = ("from txnwatch.airflow.tasks import databricks_payload_for_run as p\n"
            "p({'landing': 's3://b/l', 'output': 's3://b/o', 'schema': 's'}, 'r', 'databricks_default')")
    out = subprocess.run([sys.executable, "-c", code], env=airflow_env(airflow_local, pg_server_url, **db_env),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert f"txnwatch {current_release().version} (the code this DAG runs) is not deployed under {ARTIFACTS}: " \
           "run `txnwatch databricks deploy`" in out.stderr
    assert not standin.submitted()


def test_databricks_failing_run_fails_the_task(airflow_local, databricks_standin, deployed_release, pg_server_url,
                                               volume_dirs, schema):
    standin, db_env = databricks_standin
    # The entry script does not exist on the "workspace": the run terminates FAILED.
    payload = _payload(*volume_dirs, schema, entry_script=f"{ARTIFACTS}/missing_job.py")
    result = _probe(airflow_local, pg_server_url, db_env, "fail", payload)
    assert result["outcome"] == "failed", result
    assert "FAILED" in result["error"]
    assert any(p.endswith("/jobs/runs/get") for _, p, _ in standin.calls)


def test_databricks_killed_task_cancels_the_run(airflow_local, databricks_standin, deployed_release,
                                                pg_server_url, volume_dirs, schema):
    standin, db_env = databricks_standin
    # An empty landing zone and no --until-end end: the job runs until it is cancelled.
    payload = _payload(*volume_dirs, schema)
    payload["tasks"][0]["spark_python_task"]["parameters"].remove("--until-end")
    result = _probe(airflow_local, pg_server_url, db_env, "kill", payload)
    assert result["state_before_kill"] == "RUNNING", result
    assert any(p.endswith("/jobs/runs/cancel") for _, p, _ in standin.calls), standin.endpoints_called()
    run = standin.runs[result["run_id"]]
    assert run.result_state == "CANCELED"
    assert run.proc is not None and run.proc.poll() is not None  # the Spark job is gone
    assert result["outcome"] == "failed"


@pytest.mark.slow
def test_databricks_worker_killed_mid_run_reattaches_to_its_run(airflow_local, databricks_standin, deployed_release,
                                                               small_dataset, pg_server_url, volume_dirs, schema,
                                                               tmp_path):
    from tests.helpers import wait_for

    standin, db_env = databricks_standin
    landing, output = volume_dirs
    _land(small_dataset, landing, pg_server_url, schema)
    payload = _payload(landing, output, schema)
    payload["tasks"][0]["spark_python_task"]["parameters"] += [
        a for k, v in small_dataset["thresholds"].items() for a in ("--threshold", f"{k}={v}")]
    state_file = tmp_path / "task_state.json"
    # The worker: submits, records the run in the task's state store, polls; killed -9 while the run is going.
    worker = subprocess.Popen(_probe_cmd("resume", payload, str(state_file)),
                              env=airflow_env(airflow_local, pg_server_url, **db_env),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(r.life_cycle_state == "RUNNING" for r in standin.runs.values()) and state_file.exists(),
             timeout=240, what="the run to be RUNNING and recorded")
    worker.kill()
    worker.wait(30)
    [run_id] = standin.runs
    assert standin.runs[run_id].life_cycle_state == "RUNNING"  # the run outlives its worker
    # The next try: the operator finds the run in the state store and waits for it instead of submitting.
    result = _probe(airflow_local, pg_server_url, db_env, "resume", payload, str(state_file))
    assert result["outcome"] == "success" and result["run_id"] == run_id, result
    assert len(standin.submitted()) == 1 and len(standin.runs) == 1
    got = detection_keys(read_detections(standin.files.local_path(output)))
    assert got and got == reference_keys(standin.files.local_path(landing), small_dataset["thresholds"])


@pytest.mark.parametrize("ref, message", [
    ("db_url", "--db-secret 'db_url': expected SCOPE/KEY, e.g. txnwatch/db_url"),
    ("txnwatch/missing", "cannot read the Databricks secret txnwatch/missing: Secret txnwatch/missing does not exist"),
])
def test_databricks_db_secret_errors_are_one_line(databricks_standin, tmp_path, ref, message):
    standin, _ = databricks_standin
    env = dict(os.environ, DATABRICKS_HOST=standin.url, DATABRICKS_TOKEN=STANDIN_TOKEN)
    out = subprocess.run([sys.executable, "-m", "txnwatch", "detect", "--landing", str(tmp_path / "l"),
                          "--output", str(tmp_path / "o"), "--db-secret", ref], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"txnwatch detect: error: {message}"], out.stderr
