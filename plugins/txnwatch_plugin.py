"""The txnwatch plugin: a live view of the pipeline inside the Airflow UI (Airflow 3.1+ plugin API).

The API server mounts the view's FastAPI app under `/txnwatch`; the UI shows it in its navigation
("txnwatch") and as a tab on DAG run pages. The app, its authentication and the page live in
`txnwatch.airflow.live_view`; this file only registers them. Importing it costs nothing: the app
is built on its first request, in the API server. No I/O at import.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from txnwatch.airflow.live_view.registration import external_views, fastapi_apps


class TxnwatchPlugin(AirflowPlugin):
    name = "txnwatch"
    fastapi_apps = fastapi_apps()
    external_views = external_views()
