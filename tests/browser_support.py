"""Helpers of the real-browser tests: Playwright for Python driving Debian's chromium (conftest's
`browser_type_launch_args` launches it; its `ui_page` fixture is the page), the Airflow login form as a user
fills it, screenshots in `.local/ui/` (look at them after a run)."""

from __future__ import annotations

from tests.helpers import ROOT

SHOTS = ROOT / ".local" / "ui"
# Two cores shared by Airflow's services, Spark and X: a page or a click can take longer than Playwright's
# default 30 s. These are bounds on awaited conditions, not pauses.
UI_TIMEOUT_MS = 120_000


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, base_url: str, username: str, password: str, screenshot: str | None = None) -> None:
    """Open the UI, which sends a visitor to Airflow's login form; fill it in and sign in."""
    page.goto(base_url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    if screenshot:
        shot(page, screenshot)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
