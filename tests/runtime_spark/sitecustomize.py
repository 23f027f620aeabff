"""Makes this process's pyspark report the Spark version of the runtime a test stands in for.

Put this folder on PYTHONPATH with TXNWATCH_TEST_RUNTIME_SPARK=<version> (e.g. 3.5.2, what Databricks
Runtime 16.4 LTS ships): Python imports it at start-up, before the job's own code, the way a cluster's
pyspark carries its runtime's version. Without the variable it does nothing.
"""

import os

_version = os.environ.get("TXNWATCH_TEST_RUNTIME_SPARK")
if _version:
    import pyspark

    pyspark.__version__ = _version
