"""Running Y on Databricks: the job's settings (config), the runs/submit payload for the three computes
(payload), and building and deploying a release of the library (release, deploy)."""
