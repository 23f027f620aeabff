"""What the detect job needs from the Spark it runs on, checked before any Spark work starts.

The job uses APIs that exist only since PySpark 4.0 (`DataFrame.toArrow()` among them). On an older
runtime (Databricks Runtime 16.4 LTS ships Spark 3.5.2) it would otherwise get as far as the first batch
and die there with an AttributeError; this check fails at start with one line that says what to change.
"""

from __future__ import annotations

import re

from txnwatch.core.errors import TxnwatchError

MIN_SPARK = (4, 0)
# The oldest Databricks long-term-support runtime with a Spark the job supports (Apache Spark 4.0.0).
MIN_DATABRICKS_RUNTIME = "17.3 LTS"


def parse_spark_version(version: str) -> tuple[int, int]:
    """(major, minor) of a Spark version string: '4.0.0', '3.5.2', '4.1.0.dev0', '4.0.0-databricks'."""
    m = re.match(r"\s*(\d+)\.(\d+)", version or "")
    if not m:
        raise TxnwatchError(f"cannot tell the Spark version from {version!r}")
    return int(m.group(1)), int(m.group(2))


def check_spark_version(version: str) -> None:
    """Raise a one-line TxnwatchError when `version` is older than the job supports."""
    if parse_spark_version(version) < MIN_SPARK:
        need = ".".join(map(str, MIN_SPARK))
        raise TxnwatchError(f"this job needs Spark >= {need}, found Spark {version.strip()}: run it on "
                            f"Databricks Runtime {MIN_DATABRICKS_RUNTIME} or later (spark_version "
                            f"17.3.x-scala2.13), or with pyspark >= {need}")


def require_supported_spark() -> str:
    """Check the PySpark this process would use; returns its version."""
    try:
        import pyspark
    except ImportError:
        raise TxnwatchError("pyspark is not installed: the detect job runs on Spark >= 4.0") from None
    version = str(getattr(pyspark, "__version__", ""))
    check_spark_version(version)
    return version
