"""Names and defaults of the Airflow side: connection ids, folders, DAG ids, task timeouts.

Everything is read from the environment so that a deployment can rename a connection or move a folder
without editing code. Reading environment variables is not I/O: DAG files may import this at parse time.
The Databricks job's settings are read at run time (`txnwatch.databricks.config.databricks_config`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from txnwatch.core import defaults
from txnwatch.core.paths import REPO_ROOT, local_dir

SQL_DIR = REPO_ROOT / "sql"

X_DAG_ID = "mechanism_x_ingest"
Y_DAG_ID = "mechanism_y_detect"

POSTGRES_CONN_ID = os.environ.get("TXNWATCH_POSTGRES_CONN_ID", "postgres_default")
AWS_CONN_ID = os.environ.get("TXNWATCH_AWS_CONN_ID", "aws_default")
DATABRICKS_CONN_ID = os.environ.get("TXNWATCH_DATABRICKS_CONN_ID", "databricks_default")

def _truthy(value: str | None) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


# Where data lives by default: `<repo>/.local` locally, a mounted folder in docker-compose.
DATA_DIR = Path(os.environ.get("TXNWATCH_DATA_DIR", str(local_dir(create=False))))
DEFAULT_SOURCE = os.environ.get("TXNWATCH_SOURCE", str(DATA_DIR / "data" / "transactions.csv"))
DEFAULT_IMPORTANCE = os.environ.get("TXNWATCH_IMPORTANCE", str(DATA_DIR / "data" / "customer_importance.csv"))
DEFAULT_LANDING = os.environ.get("TXNWATCH_LANDING", str(DATA_DIR / "landing"))
DEFAULT_OUTPUT = os.environ.get("TXNWATCH_OUTPUT", str(DATA_DIR / "output"))
DEFAULT_SCHEMA = os.environ.get("TXNWATCH_SCHEMA", defaults.SCHEMA)

# Long-running tasks: bounded so a stuck run fails instead of holding the slot forever.
PRODUCER_TIMEOUT_S = int(os.environ.get("TXNWATCH_PRODUCER_TIMEOUT_S", str(4 * 3600)))
DETECT_TIMEOUT_S = int(os.environ.get("TXNWATCH_DETECT_TIMEOUT_S", str(4 * 3600)))
SENSOR_TIMEOUT_S = int(os.environ.get("TXNWATCH_SENSOR_TIMEOUT_S", str(3600)))
SENSOR_POKE_S = float(os.environ.get("TXNWATCH_SENSOR_POKE_S", "2"))

# The provider's S3KeySensor defers to the triggerer only with aiobotocore installed (its async client);
# without it (aiobotocore pins an older botocore than requirements.txt) the sensor reschedules instead,
# which frees the worker slot between pokes as well. TXNWATCH_S3_SENSOR_DEFERRABLE=0/1 forces a mode.
_s3_deferrable = os.environ.get("TXNWATCH_S3_SENSOR_DEFERRABLE")
S3_SENSOR_DEFERRABLE = (_truthy(_s3_deferrable) if _s3_deferrable is not None
                        else importlib.util.find_spec("aiobotocore") is not None)

# Databricks: whether the submit operator defers to the triggerer while the run is going.
DATABRICKS_DEFERRABLE = _truthy(os.environ.get("TXNWATCH_DATABRICKS_DEFERRABLE", "0"))
DATABRICKS_POLL_S = int(os.environ.get("TXNWATCH_DATABRICKS_POLL_S", "30"))
