"""docker-compose.yaml and Dockerfile structure (no container engine runs here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.airflow_support import ROOT
from txnwatch.airflow import settings

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_services(compose):
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "minio", "minio-init"} <= set(services)
    for name in AIRFLOW_SERVICES:
        assert services[name]["image"].startswith("${TXNWATCH_IMAGE"), name
        assert services[name]["build"] == "."
    commands = {n: services[n].get("command") for n in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    assert services["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"


def test_compose_runs_y_on_a_standing_spark_the_airflow_services_can_reach(compose):
    services = compose["services"]
    server = services["spark-connect"]
    assert server["image"] == services["airflow-scheduler"]["image"]
    assert server["command"].startswith("python -m txnwatch spark-server --host 0.0.0.0 --port 15002 ")
    ready_file = server["command"].split("--ready-file ", 1)[1]
    assert server["healthcheck"]["test"] == ["CMD", "test", "-f", ready_file]
    assert services["airflow-scheduler"]["environment"]["TXNWATCH_SPARK_REMOTE"] == "sc://spark-connect:15002"
    # It reads what the workers land: the same mounts.
    assert server["volumes"] == services["airflow-scheduler"]["volumes"]


def test_compose_healthchecks_and_dependencies(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES - {"airflow-init"} | {"postgres", "minio"}:
        assert services[name]["healthcheck"]["test"], name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing local/txnwatch" in services["minio-init"]["entrypoint"]


def test_compose_mounts_the_project_folders(compose):
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"]["airflow-scheduler"]["volumes"]}
    assert mounts["./dags"] == "/opt/airflow/dags"
    assert mounts["./plugins"] == "/opt/airflow/plugins"
    assert mounts["./sql"] == "/opt/txnwatch/sql"
    assert mounts["./spark_jobs"] == "/opt/txnwatch/spark_jobs"
    for src in ("dags", "plugins", "sql", "spark_jobs"):
        assert (ROOT / src).is_dir()


def test_compose_connections_match_the_code(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    for conn_id in (settings.POSTGRES_CONN_ID, settings.AWS_CONN_ID, settings.DATABRICKS_CONN_ID):
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, conn_id
    assert env["AIRFLOW_CONN_POSTGRES_DEFAULT"].startswith("postgresql://")
    aws = json.loads(re.sub(r"\$\{[^}]+\}", "x", env["AIRFLOW_CONN_AWS_DEFAULT"]))
    assert aws["conn_type"] == "aws" and aws["extra"]["endpoint_url"] == "http://minio:9000"
    assert env["TXNWATCH_SPARK_NATIVE_S3"] == "1"
    assert env["TXNWATCH_SPARK_PACKAGES"].startswith("org.apache.hadoop:hadoop-aws:")
    assert env["TXNWATCH_LANDING"].startswith("s3://txnwatch/")


def test_compose_holds_no_secret_values():
    text = (ROOT / "docker-compose.yaml").read_text()
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert re.search(r"\$\{" + var + r"[:}]", text), var
    assert "minioadmin" not in text


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2\b", text, re.M)
    assert "openjdk" in text and "JAVA_HOME" in text
    assert "requirements.txt" in text


def _compose_config(tmp_path, compose_file) -> subprocess.CompletedProcess:
    """`docker-compose config`: Debian's compose implementation parses and validates the file against the
    compose schema without a container engine (.ci/run installs it)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is missing: `apt-get install -y docker-compose` (.ci/run installs it)")
    from txnwatch.local.compose import write_env_file

    env_file = tmp_path / "compose.env"
    write_env_file(env_file)
    return subprocess.run([exe, "--env-file", str(env_file), "-f", str(compose_file), "config"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_compose_file_passes_a_real_compose_implementation(tmp_path):
    out = _compose_config(tmp_path, ROOT / "docker-compose.yaml")
    assert out.returncode == 0, out.stderr
    assert set(yaml.safe_load(out.stdout)["services"]) >= AIRFLOW_SERVICES


def test_compose_check_refuses_a_key_the_compose_spec_does_not_know(tmp_path):
    bad = ROOT / f".compose-check-{tmp_path.name}.yaml"  # beside the real file: same relative paths
    bad.write_text((ROOT / "docker-compose.yaml").read_text().replace("\n  postgres:\n",
                                                                       "\n  postgres:\n    bogus_key: 1\n", 1))
    try:
        out = _compose_config(tmp_path, bad)
    finally:
        bad.unlink()
    assert out.returncode != 0 and "Unsupported config option for services.postgres: 'bogus_key'" in out.stderr
