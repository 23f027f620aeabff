"""The Airflow UI as a user meets it, in a real browser (Playwright driving Debian's chromium): log in, open
each DAG's params form, fill it (a small generated data set), trigger Y, wait on its run's txnwatch live tab
until Y is ready, trigger X, both runs succeed, read the task logs; the detections equal the reference. A
misspelled threshold name is refused by the form. Screenshots go to `.local/ui/`.

`pytest -k browser` selects these tests; the two share one set of Airflow services (module fixture `ui`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from tests.airflow_support import SECRET_PASSWORD, airflow_env, detection_keys, read_detections, reference_keys
from tests.browser_support import UI_TIMEOUT_MS, log_in, shot
from tests.helpers import wait_for
from txnwatch.core.config import THRESHOLD_TITLES, Thresholds

pytest_plugins = ["tests.airflow_fixtures"]
pytestmark = [pytest.mark.browser, pytest.mark.slow]

X, Y = "mechanism_x_ingest", "mechanism_y_detect"
THRESHOLDS = "Threshold overrides (JSON, for scripts)"
# Y's Spark session warming up, or both runs, on a busy two-core machine: bounds, not pauses.
Y_READY_TIMEOUT_MS = 600_000
RUNS_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def ui(airflow_local, pg_server_url, tmp_path_factory):
    """The local Airflow services (API server with the UI, scheduler, DAG processor, triggerer), started
    once for this module; yields (LocalAirflow, REST client)."""
    from txnwatch.airflow.airflow_api import AirflowAPI
    from txnwatch.local.airflow_home import ADMIN_USER
    from txnwatch.local.stack import AirflowStack

    la = dataclasses.replace(airflow_local, env=airflow_env(airflow_local, pg_server_url))
    stack = AirflowStack(la, tmp_path_factory.mktemp("ui_services"))
    stack.start()
    try:
        api = AirflowAPI(la.api_url, ADMIN_USER, la.admin_password())
        api.wait_ready([X, Y])
        stack.wait_spark()
        yield la, api
    finally:
        stack.stop()
    for log in stack.log_dir.glob("*.log"):
        assert SECRET_PASSWORD not in log.read_text(errors="replace"), log.name


def sign_in(page, la, screenshot: str | None = None) -> None:
    from txnwatch.local.airflow_home import ADMIN_USER

    log_in(page, la.api_url, ADMIN_USER, la.admin_password(), screenshot)


def open_trigger_form(page, la, dag_id: str):
    """The DAG's page, its Trigger button, the dialog with the params form."""
    page.goto(f"{la.api_url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_role("heading", name=f"Trigger Dag - {dag_id}")).to_be_visible()
    form.get_by_role("button", name="Run Parameters").wait_for()
    return form


def field(form, title: str):
    """A param's row of the form, found by the title the user reads (Airflow 3.3's inputs carry no
    accessible name: their labels point at other ids)."""
    return form.get_by_role("group").filter(has_text=re.compile(rf"^{re.escape(title)}"))


def fill(form, values: dict) -> None:
    """Type each value into the field with that title (numbers into the number input)."""
    for title, value in values.items():
        role = "spinbutton" if isinstance(value, int | float) else "textbox"
        field(form, title).get_by_role(role).fill(str(value))


def open_section(form, name: str) -> None:
    """Expand a section of the params form (Airflow renders each `section` collapsed)."""
    button = form.get_by_role("button", name=name, exact=True)
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    expect(button).to_have_attribute("aria-expanded", "true")


def paste_json(page, form, title: str, value: dict) -> None:
    """Paste JSON into an object param's code editor, as a user does (typing would fight the editor's
    auto-closing brackets), then wait until the editor shows it."""
    editor = field(form, title).get_by_role("code")
    editor.click()
    page.evaluate("text => navigator.clipboard.writeText(text)", json.dumps(value, indent=2))
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("ControlOrMeta+v")
    for key in value:
        expect(editor).to_contain_text(key)


def submit(page, form, name: str) -> str:
    """Trigger; the UI goes to the new run's page, whose URL carries the run id."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/dagRuns")) as reply:
        form.get_by_test_id("trigger-dag-submit").click()
    if not reply.value.ok:
        shot(page, f"{name}_refused")
        raise AssertionError(f"trigger refused: HTTP {reply.value.status} {reply.value.text()[:500]}")
    page.wait_for_url("**/runs/**")
    return unquote(page.url.rstrip("/").rsplit("/runs/", 1)[1].split("/")[0])


def wait_until_y_is_ready(page, schema: str) -> None:
    """On Y's run page, the txnwatch live tab (the plugin's view of the run's schema) until it shows Y
    `running`: its Spark session is warm, as the demo waits for before starting X."""
    page.get_by_role("link", name="txnwatch live").click()
    view = page.frame_locator("iframe[title='txnwatch live']")
    expect(view.locator("#schema")).to_have_value(schema)
    expect(view.locator("#y-status")).to_have_text("running", timeout=Y_READY_TIMEOUT_MS)


def trigger_to_ready_mark_s(api, pg_server_url: str, schema: str, run_id: str) -> float:
    """Seconds from the run's creation (the Trigger click's request) to Y's readiness mark in Postgres."""
    from datetime import datetime

    from txnwatch.core.db import connect
    from txnwatch.records.readiness import y_readiness

    queued = api.dag_run(Y, run_id)["queued_at"]
    queued = queued if isinstance(queued, datetime) else datetime.fromisoformat(str(queued))
    with connect(pg_server_url, autocommit=True) as conn:
        return (y_readiness(conn, schema).ready_at - queued).total_seconds()


def test_browser_ui_triggers_both_dags_and_shows_their_logs(ui, ui_page, small_dataset, tmp_path, schema,
                                                            pg_server_url):
    la, api = ui
    page = ui_page
    landing, output = tmp_path / "landing", tmp_path / "output"
    sign_in(page, la, screenshot="01_login")
    page.goto(f"{la.api_url}/dags")
    expect(page.get_by_role("link", name=Y).first).to_be_visible()
    shot(page, "02_dags")

    y_values = {"Landing zone": str(landing), "Output location": str(output), "Postgres schema": schema}
    y_thresholds = {THRESHOLD_TITLES[name]: value for name, value in small_dataset["thresholds"].items()}
    form = open_trigger_form(page, la, Y)
    fill(form, y_values)
    open_section(form, "Rule thresholds")
    fill(form, y_thresholds)
    shot(page, "03_y_form")
    y_run, to_running = trigger_y_and_wait_until_running(page, form, schema, "03_y_form")
    # Reported, not asserted (a benchmark figure; docs/airflow.md): the browser shares the two cores.
    print(f"Trigger -> Y's readiness mark: {trigger_to_ready_mark_s(api, pg_server_url, schema, y_run):.1f}s; "
          f"-> `running` on its live tab: {to_running:.1f}s")
    shot(page, "04_y_ready")
    x_values = {"Transactions source": small_dataset["source"], "Customer importance source":
                small_dataset["importance"], "Landing zone": str(landing), "Rows per chunk": 5000,
                "Interval (s)": 0.2, "Postgres schema": schema}
    x_run = trigger_x(page, la, x_values, "05_x_form")
    states = wait_for_runs(api, {X: x_run, Y: y_run})
    for dag_id, run_id, name in ((Y, y_run, "06_y_run"), (X, x_run, "07_x_run")):
        page.goto(f"{la.api_url}/dags/{dag_id}/runs/{run_id}")
        expect(page.get_by_role("heading", name=run_id)).to_be_visible()
        # The run's state badge, as the API reported it ("Success", "Failed").
        expect(page.get_by_text(states[dag_id].capitalize(), exact=True).first).to_be_visible()
        shot(page, name)
    assert states == {X: "success", Y: "success"}, states

    # The Spark task's log as the UI shows it: the job's progress and summary; then the report's.
    page.goto(f"{la.api_url}/dags/{Y}/runs/{y_run}/tasks/run_detect_local")
    expect(page.get_by_text("txnwatch.detect summary", exact=False).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    # Y ran on the stack's standing Spark (warm), not on a JVM of its own.
    expect(page.get_by_text("Spark Connect client of the standing Spark", exact=False).first).to_be_visible()
    shot(page, "08_y_task_log")
    page.goto(f"{la.api_url}/dags/{Y}/runs/{y_run}/tasks/report")
    expect(page.get_by_text("chunks processed", exact=False).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    shot(page, "09_report_log")

    got = detection_keys(read_detections(output))
    assert got == reference_keys(landing, small_dataset["thresholds"])
    assert {p for p, _, _ in got} == {"PatId1", "PatId2", "PatId3"}

    # A second replay with the same form values: the run fails at once and its log's line says why.
    form = open_trigger_form(page, la, Y)
    fill(form, y_values)
    again = submit(page, form, "12_y_again")
    assert wait_for_runs(api, {Y: again}) == {Y: "failed"}
    page.goto(f"{la.api_url}/dags/{Y}/runs/{again}/tasks/run_detect_local")
    expect(page.get_by_text(f"schema {schema} already finished a replay", exact=False).first).to_be_visible()
    expect(page.get_by_text("start_over on", exact=False).first).to_be_visible()
    shot(page, "12_y_again_says_why")
    # Its live tab shows this run's Y, which never started: not the earlier run's "finished".
    page.goto(f"{la.api_url}/dags/{Y}/runs/{again}")
    page.get_by_role("link", name="txnwatch live").click()
    view = page.frame_locator("iframe[title='txnwatch live']")
    expect(view.locator("#verdict")).to_contain_text("this run's Y has not started", timeout=UI_TIMEOUT_MS)
    expect(view.locator("#y-status")).to_have_text("not started")
    shot(page, "12_y_again_live_tab")
    # Start over: this run's Y on its live tab (the old state is gone), then X; a fresh, equal replay.
    form = open_trigger_form(page, la, Y)
    fill(form, y_values)
    start_over = field(form, "Start over").get_by_role("checkbox")
    start_over.locator("xpath=..").click()  # the switch the user clicks wraps the (hidden) input
    expect(start_over).to_be_checked()
    open_section(form, "Rule thresholds")
    fill(form, y_thresholds)
    y_run, to_running = trigger_y_and_wait_until_running(page, form, schema, "13_y_start_over")
    print(f"start over: Trigger -> Y's readiness mark: "
          f"{trigger_to_ready_mark_s(api, pg_server_url, schema, y_run):.1f}s; -> `running`: {to_running:.1f}s")
    assert not list(output.glob("detections_*.jsonl"))  # cleared before this run's Y started
    x_run = trigger_x(page, la, x_values, "14_x_again")
    assert wait_for_runs(api, {X: x_run, Y: y_run}) == {X: "success", Y: "success"}
    assert detection_keys(read_detections(output)) == got


def trigger_y_and_wait_until_running(page, form, schema: str, name: str) -> tuple[str, float]:
    """Trigger Y; (its run id, seconds from the click to `running` on its live tab)."""
    import time

    t0 = time.monotonic()
    run = submit(page, form, name)
    wait_until_y_is_ready(page, schema)
    return run, time.monotonic() - t0


def trigger_x(page, la, values: dict, name: str) -> str:
    form = open_trigger_form(page, la, X)
    fill(form, values)
    shot(page, name)
    return submit(page, form, name)


def wait_for_runs(api, runs: dict[str, str]) -> dict[str, str]:
    def finished() -> dict | None:
        states = {d: api.dag_run(d, r)["state"] for d, r in runs.items()}
        return states if all(s in ("success", "failed") for s in states.values()) else None

    return wait_for(finished, timeout=RUNS_TIMEOUT_S, interval=2, what="the DAG runs to finish")


def test_browser_form_refuses_a_misspelled_threshold(ui, ui_page, schema):
    la, api = ui
    page = ui_page
    sign_in(page, la)
    runs_before = api.dag_runs(Y)
    form = open_trigger_form(page, la, Y)
    fill(form, {"Postgres schema": schema})
    # Each threshold is a typed field with its default: a name cannot be misspelled there.
    open_section(form, "Rule thresholds")
    for name, title in THRESHOLD_TITLES.items():
        box = field(form, title).get_by_role("spinbutton")
        assert float(box.input_value()) == getattr(Thresholds(), name), name
        assert box.get_attribute("aria-valuemin") == "0"
        if name.endswith("_percentile"):
            assert box.get_attribute("aria-valuemax") == "1", name
    shot(page, "10_y_form_threshold_fields")
    # The JSON object kept for scripts still refuses an unknown name.
    open_section(form, "Advanced")
    paste_json(page, form, THRESHOLDS, {"child_min_txn": 5})
    form.get_by_test_id("trigger-dag-submit").click()
    refusal = form.get_by_text("'child_min_txn' was unexpected", exact=False).first
    expect(refusal).to_be_visible()
    # The message (with the whole JSON schema after it) is above the long form: show its first lines.
    refusal.evaluate("e => e.scrollIntoView({block: 'start'})")
    shot(page, "11_y_form_refuses_a_typo")
    assert "Additional properties are not allowed" in form.inner_text()
    assert "/runs/" not in page.url
    assert api.dag_runs(Y) == runs_before
