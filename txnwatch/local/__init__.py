"""Running everything on one machine: the local Airflow (its home, metadata database and process stack),
the docker-compose environment and `make demo`."""
