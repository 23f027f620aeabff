"""The live view in a real browser (Playwright driving Debian's chromium), inside the real Airflow UI: opened
from the navigation entry the plugin adds, while the real `txnwatch detect` and `txnwatch ingest` run on a
small generated data set, it shows the chunks processed increasing. Without a login it is refused.

`pytest -k browser` selects these tests. They use the API server of `test_live_view.py` (the session's
`api_server`: the UI and the plugin, no scheduler), so they add no Airflow start-up of their own to the
suite. Screenshots go to `.local/ui/`.
"""

from __future__ import annotations

import os
import sys

import pytest
from playwright.sync_api import expect

from tests.airflow_support import kill_group, read_detections, start
from tests.browser_support import log_in, shot
from tests.helpers import wait_for

pytest_plugins = ["tests.airflow_fixtures", "tests.live_view_support"]
pytestmark = pytest.mark.browser

ROWS_PER_CHUNK = 1000  # the 40,000-row set: 40 chunks, landed over 30 s
INTERVAL_S = 0.75
CHUNKS = 40_000 // ROWS_PER_CHUNK
# Bounds on awaited conditions on a busy two-core machine (Y's Spark start-up above all), not pauses.
Y_READY_TIMEOUT_MS = 400_000
RUN_TIMEOUT_S = 300


def txnwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "txnwatch", *args]


def y_chunk(view) -> int:
    """The last chunk processed by Y, as the view shows it."""
    return int(view.locator("#y-chunk").get_attribute("data-value") or 0)


def schema_ready(db_url: str, schema: str) -> bool:
    import psycopg

    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.y_checkpoint",)).fetchone()[0]


@pytest.mark.slow
def test_browser_live_view_shows_chunks_processed_increasing_during_a_run(
        api_server, small_dataset, pg_server_url, schema, tmp_path, ui_page):
    page = ui_page
    landing, output = tmp_path / "landing", tmp_path / "output"
    thresholds = [a for k, v in small_dataset["thresholds"].items() for a in ("--threshold", f"{k}={v}")]
    env = dict(os.environ)
    # Y first, as an operator starts a consumer before its producer: it creates the schema and warms Spark up.
    detect = start(txnwatch("detect", "--landing", str(landing), "--output", str(output), "--db", pg_server_url,
                            "--schema", schema, "--until-end", *thresholds), env, tmp_path / "detect.log")
    ingest = None
    try:
        wait_for(lambda: schema_ready(pg_server_url, schema) or detect.poll() is not None, timeout=120,
                 what="Y to create its tables")
        assert detect.poll() is None, (tmp_path / "detect.log").read_text()[-3000:]

        log_in(page, api_server.url, api_server.username, api_server.password)
        page.get_by_role("link", name="txnwatch", exact=True).click()  # the plugin's navigation entry
        view = page.frame_locator("iframe[title=txnwatch]")
        view.locator("#schema").select_option(schema)
        expect(view.locator("#y-status")).to_have_text("running", timeout=Y_READY_TIMEOUT_MS)

        ingest = start(txnwatch("ingest", "--source", small_dataset["source"], "--importance",
                                small_dataset["importance"], "--landing", str(landing), "--db", pg_server_url,
                                "--schema", schema, "--rows-per-chunk", str(ROWS_PER_CHUNK),
                                "--interval", str(INTERVAL_S)), env, tmp_path / "ingest.log")
        first = wait_for(lambda: y_chunk(view), timeout=RUN_TIMEOUT_S, interval=0.5,
                         what="Y's first chunk in the view")
        # Any increase counts: a catch-up batch may take several chunks at once.
        wait_for(lambda: y_chunk(view) > first, timeout=RUN_TIMEOUT_S, interval=0.5,
                 what=f"chunks processed beyond {first} in the view")
        shot(page, "live_view_running")

        assert ingest.wait(RUN_TIMEOUT_S) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
        assert detect.wait(RUN_TIMEOUT_S) == 0, (tmp_path / "detect.log").read_text()[-3000:]
        expect(view.locator("#y-chunk")).to_have_attribute("data-value", str(CHUNKS))
        expect(view.locator("#y-status")).to_have_text("finished")
        expect(view.locator("#det-total")).to_have_attribute("data-value", str(len(read_detections(output))))
        expect(view.locator("#detections tbody tr").nth(1)).to_be_visible()
        expect(view.locator("#verdict")).to_contain_text("all chunks processed")
        shot(page, "live_view")
    finally:
        for proc in (ingest, detect):
            if proc is not None:
                kill_group(proc)


def test_browser_without_login_the_view_and_its_json_are_refused(api_server, ui_page):
    page = ui_page
    assert page.goto(api_server.url + "/txnwatch/view").status == 401
    assert page.request.get(api_server.url + "/txnwatch/api/state/txnwatch").status == 401
    page.get_by_role("link", name="log in to Airflow").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()  # Airflow's login form
    page.get_by_label("Username").fill(api_server.username)
    page.get_by_label("Password").fill(api_server.password)
    page.get_by_role("button", name="Sign in").click()
    # The login round trip ends on the view, not on Airflow's home page.
    page.wait_for_url("**/txnwatch/view")
    expect(page.locator("#verdict")).to_be_visible()
