"""Spark entry script of Mechanism Y, for `spark-submit` and Databricks `spark_python_task`.

Takes the same arguments as `txnwatch detect`; the logic lives in `txnwatch.detect`.
"""

import sys

from txnwatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["detect", *sys.argv[1:]]))
