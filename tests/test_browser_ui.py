"""The Airflow UI as a user meets it, in a real browser (Playwright driving Debian's chromium): log in,
open each DAG's params form, fill it (a small generated data set), trigger Y then X, watch both runs
succeed, read a task log; the detections equal the reference. A misspelled threshold is refused by the
form. Screenshots go to `.local/ui/` (look at them after a run).

`pytest -k browser` selects these tests. Without chromium they fail at once, saying how to install it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from airflow_support import ROOT, SECRET_PASSWORD, airflow_env, detection_keys, read_detections, reference_keys
from conftest import wait_for

pytest_plugins = ["airflow_fixtures"]
# Bringing the services up alone can take minutes on a busy two-core machine.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

SHOTS = ROOT / ".local" / "ui"
X, Y = "mechanism_x_ingest", "mechanism_y_detect"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # Pasting JSON into the form's code editor is how a user fills an object param; the clipboard needs
    # these permissions in a headless browser.
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1100},
            "permissions": ["clipboard-read", "clipboard-write"]}


@pytest.fixture(scope="module", autouse=True)
def chromium_installed():
    assert shutil.which("chromium") or Path("/usr/bin/chromium").exists(), (
        "Debian's chromium is missing: `apt-get install -y chromium` (.ci/run installs it for CI)")


@pytest.fixture(scope="module")
def ui(airflow_local, pg_server_url, tmp_path_factory):
    """The local Airflow services (API server with the UI, scheduler, DAG processor, triggerer)."""
    from txnwatch.airflow_local import ADMIN_USER
    from txnwatch.orchestration.airflow_api import AirflowAPI
    from txnwatch.orchestration.stack import AirflowStack

    la = dataclasses.replace(airflow_local, env=airflow_env(airflow_local, pg_server_url))
    stack = AirflowStack(la, tmp_path_factory.mktemp("ui_services"))
    stack.start()
    try:
        api = AirflowAPI(la.api_url, ADMIN_USER, la.admin_password())
        api.wait_ready([X, Y])
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield la, api
    finally:
        stack.stop()
    for log in stack.log_dir.glob("*.log"):
        assert SECRET_PASSWORD not in log.read_text(errors="replace"), log.name


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, la) -> None:
    from txnwatch.airflow_local import ADMIN_USER

    # Two cores shared by Airflow, Spark and X: pages and actions can take longer than Playwright's 30 s.
    page.set_default_timeout(120_000)
    page.set_default_navigation_timeout(120_000)
    page.goto(la.api_url)
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(la.admin_password())
    shot(page, "01_login")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)


def open_trigger_form(page, la, dag_id: str):
    page.goto(f"{la.api_url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.get_by_text("Run Parameters").wait_for()
    return form


def fill(form, values: dict) -> None:
    for name, value in values.items():
        form.locator(f"input[name=element_{name}]").fill(str(value))


def paste_json(page, form, label: str, value: dict) -> None:
    """Paste into the param's code editor, as a user pastes JSON (typing would fight its auto-closing)."""
    field = form.locator("label", has_text=label).locator(
        "xpath=ancestor::div[.//div[contains(@class, 'monaco-editor')]][1]")
    editor = field.locator(".monaco-editor").first
    editor.click()
    page.evaluate("text => navigator.clipboard.writeText(text)", json.dumps(value))
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("ControlOrMeta+v")


def submit(page, form, name: str) -> str:
    """Trigger; the UI goes to the new run's page, whose URL ends with the run id."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/dagRuns"),
                              timeout=120_000) as reply:
        form.get_by_test_id("trigger-dag-submit").click()
    if not reply.value.ok:
        shot(page, f"{name}_refused")
        raise AssertionError(f"trigger refused: HTTP {reply.value.status} {reply.value.text()[:500]}")
    page.wait_for_url("**/runs/**", timeout=120_000)
    return unquote(page.url.rstrip("/").rsplit("/runs/", 1)[1].split("/")[0])


def test_browser_ui_triggers_both_dags_and_shows_their_logs(ui, page, small_dataset, tmp_path, schema):
    la, api = ui
    landing, output = tmp_path / "landing", tmp_path / "output"
    log_in(page, la)
    page.goto(f"{la.api_url}/dags")
    page.get_by_text(Y).first.wait_for()
    shot(page, "02_dags")

    form = open_trigger_form(page, la, Y)
    fill(form, {"landing": landing, "output": output, "schema": schema})
    paste_json(page, form, "Rule thresholds (optional)", small_dataset["thresholds"])
    shot(page, "03_y_form")
    y_run = submit(page, form, "03_y_form")

    form = open_trigger_form(page, la, X)
    fill(form, {"source": small_dataset["source"], "importance": small_dataset["importance"],
                "landing": landing, "rows_per_chunk": 5000, "interval_seconds": 0.2, "schema": schema})
    shot(page, "04_x_form")
    x_run = submit(page, form, "04_x_form")

    def finished() -> dict | None:
        states = {d: api.dag_run(d, r)["state"] for d, r in ((X, x_run), (Y, y_run))}
        return states if all(s in ("success", "failed") for s in states.values()) else None

    states = wait_for(finished, timeout=900, interval=2, what="both DAG runs to finish")
    page.goto(f"{la.api_url}/dags/{Y}/runs/{y_run}")
    page.get_by_text("run_detect_local").first.wait_for()
    shot(page, "05_y_run")
    page.goto(f"{la.api_url}/dags/{X}/runs/{x_run}")
    page.get_by_text("produce_chunks").first.wait_for()
    shot(page, "06_x_run")
    assert states == {X: "success", Y: "success"}, states

    # The Spark task's log as the UI shows it: Spark's own lines, the job's progress and summary.
    page.goto(f"{la.api_url}/dags/{Y}/runs/{y_run}/tasks/run_detect_local")
    page.get_by_text("txnwatch.detect summary", exact=False).first.wait_for(timeout=60_000)
    shot(page, "07_y_task_log")
    page.goto(f"{la.api_url}/dags/{Y}/runs/{y_run}/tasks/report")
    page.get_by_text("chunks processed", exact=False).first.wait_for(timeout=60_000)
    shot(page, "08_report_log")

    got = detection_keys(read_detections(output))
    assert got == reference_keys(landing, small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}


def test_browser_form_refuses_a_misspelled_threshold(ui, page, schema):
    la, api = ui
    log_in(page, la)
    runs_before = api.dag_runs(Y)
    form = open_trigger_form(page, la, Y)
    fill(form, {"schema": schema})
    paste_json(page, form, "Rule thresholds (optional)", {"child_min_txn": 5})
    form.get_by_test_id("trigger-dag-submit").click()
    refusal = form.get_by_text("'child_min_txn' was unexpected", exact=False).first
    refusal.wait_for(timeout=30_000)
    shot(page, "09_y_form_refuses_a_typo")
    assert "Additional properties are not allowed" in form.inner_text()
    assert "/runs/" not in page.url
    assert api.dag_runs(Y) == runs_before
