"""The detect job's start-up check of the Spark it runs on (txnwatch.detect.runtime)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from txnwatch.core.errors import TxnwatchError
from txnwatch.detect.runtime import check_spark_version, parse_spark_version, require_supported_spark

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("version", ["4.0.0", "4.0.5", "4.1.0", "4.3.0", "4.1.0.dev0", "5.0.0"])
def test_detect_accepts_spark_4_and_later(version):
    check_spark_version(version)


@pytest.mark.parametrize("version", ["3.5.2", "3.5.0", "3.4.1", "2.4.8"])
def test_detect_refuses_spark_older_than_4(version):
    with pytest.raises(TxnwatchError) as e:
        check_spark_version(version)
    message = str(e.value)
    assert "\n" not in message
    assert f"found Spark {version}" in message and "Spark >= 4.0" in message and "17.3" in message


def test_detect_refuses_an_unreadable_spark_version():
    with pytest.raises(TxnwatchError, match="cannot tell the Spark version"):
        parse_spark_version("unknown")


def test_detect_accepts_the_installed_pyspark():
    import pyspark

    assert require_supported_spark() == pyspark.__version__


def _detect_cli(tmp_path: Path, runtime_spark: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TXNWATCH_TEST_RUNTIME_SPARK=runtime_spark,
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "cluster_python"), os.environ.get("PYTHONPATH", "")]))
    # No database and no landing zone: the check must come before anything touches them.
    return subprocess.run([sys.executable, "-m", "txnwatch", "detect", "--landing", str(tmp_path / "landing"),
                           "--output", str(tmp_path / "output"), "--db", "postgresql://nobody@127.0.0.1:1/x"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_detect_on_an_old_runtime_fails_at_start_with_one_line(tmp_path):
    out = _detect_cli(tmp_path, "3.5.2")  # what Databricks Runtime 16.4 LTS ships
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("txnwatch detect: error: this job needs Spark >= 4.0, found Spark 3.5.2")
    assert not (tmp_path / "output").exists()
