"""Orchestration logic shared by the Airflow DAGs, the custom operators, `txnwatch airflow` and the demo.

Nothing here imports pyspark: Airflow parses modules that import this package.
"""
