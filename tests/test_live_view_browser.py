"""The live view in a real browser (Playwright driving Debian's chromium), inside the real Airflow UI, while
the real `txnwatch ingest` and `txnwatch detect` run on a small generated data set.

Selected with `pytest -k browser`. Screenshots go to `.local/ui/`.
"""

from __future__ import annotations

import os
import sys

import pytest
from airflow_support import kill_group, start
from conftest import ROOT, wait_for

pytest_plugins = ["airflow_fixtures", "live_view_support"]

SHOTS = ROOT / ".local" / "ui"
ROWS_PER_CHUNK = 1000  # the 40,000-row set: 40 chunks
INTERVAL_S = 0.75


def txnwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "txnwatch", *args]


def y_chunk(frame) -> int:
    return int(frame.locator("#y-chunk").get_attribute("data-value") or 0)


def schema_ready(db_url: str, schema: str) -> bool:
    import psycopg

    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.y_checkpoint",)).fetchone()[0]


def log_in(page, api_server) -> None:
    """The Airflow login form, as a user fills it."""
    page.goto(api_server.url + "/")
    page.locator("input[name=username]").fill(api_server.username)
    page.locator("input[name=password]").fill(api_server.password)
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_browser_live_view_shows_chunks_processed_increasing_during_a_run(
        api_server, small_dataset, pg_server_url, schema, tmp_path, page):
    landing, output = tmp_path / "landing", tmp_path / "output"
    thresholds = [a for k, v in small_dataset["thresholds"].items() for a in ("--threshold", f"{k}={v}")]
    env = dict(os.environ)
    # Y first, as the benchmark's start: it creates the schema, warms Spark up, then X starts.
    detect = start(txnwatch("detect", "--landing", str(landing), "--output", str(output), "--db", pg_server_url,
                            "--schema", schema, "--until-end", *thresholds), env, tmp_path / "detect.log")
    ingest = None
    try:
        wait_for(lambda: schema_ready(pg_server_url, schema) or detect.poll() is not None, timeout=120,
                 what="Y to create its tables")
        assert detect.poll() is None, (tmp_path / "detect.log").read_text()[-3000:]

        page.set_viewport_size({"width": 1440, "height": 1150})
        log_in(page, api_server)
        page.goto(api_server.url + "/plugin/txnwatch")  # the navigation's "txnwatch" entry
        frame = page.frame_locator("iframe[title=txnwatch]")
        frame.locator("#schema").select_option(schema)
        wait_for(lambda: frame.locator("#y-status").inner_text() == "running", timeout=400, interval=0.5,
                 what="the view to show Y ready")

        ingest = start(txnwatch("ingest", "--source", small_dataset["source"], "--importance",
                                small_dataset["importance"], "--landing", str(landing), "--db", pg_server_url,
                                "--schema", schema, "--rows-per-chunk", str(ROWS_PER_CHUNK),
                                "--interval", str(INTERVAL_S)), env, tmp_path / "ingest.log")
        wait_for(lambda: y_chunk(frame) >= 1, timeout=120, interval=0.5, what="Y's first chunk in the view")
        first = y_chunk(frame)
        wait_for(lambda: y_chunk(frame) > first, timeout=120, interval=0.5, what="chunks processed increasing")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "live_view_running.png"))

        assert ingest.wait(120) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
        assert detect.wait(300) == 0, (tmp_path / "detect.log").read_text()[-3000:]
        chunks = 40_000 // ROWS_PER_CHUNK
        wait_for(lambda: y_chunk(frame) == chunks, timeout=30, interval=0.5, what="the last chunk in the view")
        wait_for(lambda: frame.locator("#y-status").inner_text() == "finished", timeout=30, interval=0.5,
                 what="Y finished in the view")
        assert int(frame.locator("#det-total").get_attribute("data-value")) > 0
        assert frame.locator("#detections tbody tr").count() > 1
        verdict = frame.locator("#verdict").inner_text()
        assert "kept pace" in verdict or "fell behind" in verdict, verdict
        page.screenshot(path=str(SHOTS / "live_view.png"))
    finally:
        for proc in (ingest, detect):
            if proc is not None:
                kill_group(proc)


def test_browser_without_login_the_view_and_its_json_are_refused(api_server, page):
    assert page.goto(api_server.url + "/txnwatch/view").status == 401
    page.get_by_role("link", name="log in to Airflow").click()
    page.locator("input[name=username]").wait_for()  # the Airflow login form
    assert page.request.get(api_server.url + "/txnwatch/api/state/txnwatch").status == 401
