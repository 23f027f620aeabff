"""The live view of a txnwatch pipeline inside the Airflow UI (an Airflow 3 plugin's FastAPI app).

- `snapshot`: what the view shows, read from one schema's state in PostgreSQL (read-only, short queries).
- `app`: the FastAPI app the API server mounts (`plugins/txnwatch_plugin.py`), its authentication and the
  external views (navigation, and the run page of both DAGs).
- `static/`: the page (plain HTML, JavaScript and SVG; no third-party script, relative URLs only).
"""
