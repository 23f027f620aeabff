"""Running X and Y under Airflow: operators, task callables, connections, settings, input checks, the REST
client, the local spark-submit runner and the live view plugin. Nothing here imports pyspark."""
