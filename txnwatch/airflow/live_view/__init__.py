"""The live view of a txnwatch pipeline inside the Airflow UI (an Airflow 3 plugin's FastAPI app).

- what the view shows comes from the read side, `txnwatch.records.snapshot` (one schema's state in PostgreSQL,
  read-only, short queries).
- `registration`: what `plugins/txnwatch_plugin.py` registers (the app, built lazily; the external views in
  the navigation and on DAG run pages), at no import cost for Airflow's other processes.
- `app`: the FastAPI app the API server mounts, and its authentication.
- `static/`: the page (plain HTML, JavaScript and SVG; no third-party script, relative URLs only).
"""
