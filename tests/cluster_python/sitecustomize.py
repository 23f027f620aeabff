"""Makes this Python look like a Databricks cluster's to the job it runs (for tests and the stand-in).

Put this folder on PYTHONPATH; Python imports it at start-up, after site-packages' .pth files and before
the job's own code.
- TXNWATCH_TEST_RUNTIME_SPARK=<version> (e.g. 3.5.2, what Databricks Runtime 16.4 LTS ships): pyspark
  reports that version, as a cluster's pyspark carries its runtime's.
- TXNWATCH_TEST_HIDE_EDITABLE=1: the project's editable install is not importable, so the job can only
  use the libraries installed on the "cluster" (the deployed wheel).
Without the variables it does nothing.
"""

import os
import sys

if os.environ.get("TXNWATCH_TEST_HIDE_EDITABLE") == "1":
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]

_version = os.environ.get("TXNWATCH_TEST_RUNTIME_SPARK")
if _version:
    import pyspark

    pyspark.__version__ = _version
