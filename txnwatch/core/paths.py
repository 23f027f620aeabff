"""The one place that says where the checkout and its scratch folder `.local/` are.

Every module that needs `.local/` (the embedded Postgres, the local Airflow, the demo, the DAGs' default
locations) asks here, so a command run from another folder uses the same `.local/` as one run from the
checkout. TXNWATCH_LOCAL_DIR moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def local_dir(create: bool = True) -> Path:
    """`<checkout>/.local`, or TXNWATCH_LOCAL_DIR; created unless `create` is False (parse-time callers)."""
    env = os.environ.get("TXNWATCH_LOCAL_DIR")
    root = Path(env).expanduser().resolve() if env else REPO_ROOT / ".local"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


# The detect job's entry script: what spark-submit runs locally and what a Databricks release uploads.
DETECT_ENTRY_SCRIPT = REPO_ROOT / "spark_jobs" / "detect_job.py"
