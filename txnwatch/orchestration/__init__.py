"""Running Y on Databricks: the job's settings, the submit payload, and building and deploying a release.
(Moves to `databricks/` with issue 14.)"""
