"""`make airflow-up` and `make demo` stop every process they started, however they are told to stop:
SIGTERM to make (a service manager, `timeout`), SIGHUP or SIGINT to the terminal's process group (a closed
terminal, Ctrl-C). Afterwards no process of theirs is left (found by an environment tag every
descendant inherits, the standing Spark's JVM included) and the API server's port is free."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.airflow_support import ROOT, command_lines, fail_unfinished_runs, port_free, start, tagged_processes
from tests.helpers import free_port, wait_for

pytest_plugins = ["tests.airflow_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _env(airflow_local, pg_server_url, tmp_path, port: int, tag: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, TXNWATCH_AIRFLOW_HOME=str(airflow_local.home),
                TXNWATCH_AIRFLOW_DB=airflow_local.metadata_url.rsplit("/", 1)[1],
                TXNWATCH_AIRFLOW_PORT=str(port), TXNWATCH_SPARK_PORT=str(free_port()), TXNWATCH_DB_URL=pg_server_url,
                TXNWATCH_LOCAL_DIR=str(tmp_path / "local"), TXNWATCH_TEST_TAG=tag, **extra)


def _stop_and_check(proc, sig: int, to_group: bool, tag: str, port: int, log) -> None:
    if to_group:
        os.killpg(proc.pid, sig)  # what a terminal does: the whole foreground process group
    else:
        os.kill(proc.pid, sig)  # what a service manager or `timeout` does: the main process only
    proc.wait(120)
    assert _gone(tag), f"left behind: {command_lines(tagged_processes(tag))}\n{log.read_text()[-3000:]}"
    assert port_free(port), f"port {port} still taken"


def _gone(tag: str, timeout: float = 30.0) -> bool:
    """True once no tagged process is left (the JVM may take a moment after its parent's SIGTERM)."""
    try:
        wait_for(lambda: not tagged_processes(tag), timeout=timeout, interval=0.3, what="every process to stop")
        return True
    except AssertionError:
        return False


def _answers(port: int) -> bool:
    return not port_free(port)


@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGHUP, True), (signal.SIGINT, True)],
                         ids=["SIGTERM-to-make", "SIGHUP-to-group", "SIGINT-to-group"])
def test_make_airflow_up_stops_every_process(airflow_local, pg_server_url, tmp_path, sig, to_group):
    port, tag = free_port(), uuid.uuid4().hex
    log = tmp_path / "airflow-up.log"
    proc = start(["make", "-s", "-C", str(ROOT), "airflow-up"], _env(airflow_local, pg_server_url, tmp_path,
                                                                      port, tag), log)
    try:
        wait_for(lambda: "Airflow UI:" in log.read_text(errors="replace") or proc.poll() is not None,
                 timeout=300, interval=0.5, what="the Airflow UI")
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _answers(port) and len(tagged_processes(tag)) >= 5
        assert any("spark-server" in line for line in command_lines(tagged_processes(tag)))
        _stop_and_check(proc, sig, to_group, tag, port, log)
        assert "every Airflow process stopped" in log.read_text()
    finally:
        for pid in tagged_processes(tag):
            os.kill(pid, signal.SIGKILL)


def test_make_demo_stopped_while_x_and_y_run_stops_every_process(airflow_local, pg_server_url, tmp_path):
    """SIGTERM to make while Y (a client of the stack's standing Spark, its JVM included) and X's producer
    run: nothing is left."""
    port, tag = free_port(), uuid.uuid4().hex
    log = tmp_path / "demo.log"
    env = _env(airflow_local, pg_server_url, tmp_path, port, tag, TXNWATCH_DEMO_ROWS="200000",
               TXNWATCH_DEMO_INTERVAL="2", TXNWATCH_DEMO_SCHEMA=f"demo_{tag[:12]}")
    proc = start(["make", "-s", "-C", str(ROOT), "demo"], env, log)
    try:
        # Y reports ready only from inside its running job, and X is triggered right then.
        wait_for(lambda: "Y ready after" in log.read_text(errors="replace") or proc.poll() is not None,
                 timeout=900, interval=0.5, what="Y ready and X triggered")
        assert proc.poll() is None, log.read_text()[-3000:]
        lines = command_lines(tagged_processes(tag))
        assert any("detect_job.py" in line for line in lines), f"Y's job is not running: {lines}"
        assert any("spark-server" in line for line in lines), f"the standing Spark is not running: {lines}"
        _stop_and_check(proc, signal.SIGTERM, False, tag, port, log)
        assert "all Airflow processes stopped" in log.read_text()
    finally:
        for pid in tagged_processes(tag):
            os.kill(pid, signal.SIGKILL)
        fail_unfinished_runs(airflow_local)  # the demo's runs, cut off mid-run: no later stack adopts them
