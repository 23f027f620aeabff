"""What the plugin registers, importable at no cost: every Airflow process (scheduler, DAG processor, each
task) imports the plugins folder, while only the API server serves the app. So the app and its imports
(FastAPI routes, Airflow's security module) are built on the first request, in the API server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

URL_PREFIX = "/txnwatch"


class LazyApp:
    """An ASGI app that builds the real one (from `factory`) on its first request."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


def live_view_app() -> Any:
    from txnwatch.airflow.live_view.app import create_app

    return create_app()


def fastapi_apps() -> list[dict[str, Any]]:
    return [{"app": LazyApp(live_view_app), "url_prefix": URL_PREFIX, "name": "txnwatch live view"}]


def external_views() -> list[dict[str, Any]]:
    """The view in the UI's navigation, and as a tab on DAG run pages (hrefs relative to the UI)."""
    return [
        {"name": "txnwatch", "href": "txnwatch/view", "destination": "nav", "url_route": "txnwatch",
         "icon": "txnwatch/static/icon.svg"},
        # Airflow shows a dag_run view on every DAG's runs; the route answers 404 for other DAGs.
        {"name": "txnwatch live", "href": "txnwatch/run/{DAG_ID}/{RUN_ID}", "destination": "dag_run",
         "url_route": "txnwatch_run", "icon": "txnwatch/static/icon.svg"},
    ]
