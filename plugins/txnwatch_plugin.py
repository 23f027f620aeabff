"""The txnwatch plugin: a live view of the pipeline inside the Airflow UI (Airflow 3.1+ plugin API).

The API server mounts the view's FastAPI app under `/txnwatch`; the UI shows it in its navigation
("txnwatch") and as a tab on the run page of both txnwatch DAGs. The app, its authentication and the page
live in `txnwatch.orchestration.live_view`; this file only registers them. No I/O at import.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from txnwatch.orchestration.live_view.app import URL_PREFIX, create_app, external_views


class TxnwatchPlugin(AirflowPlugin):
    name = "txnwatch"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "txnwatch live view"}]
    external_views = external_views()
