"""Mechanism X: fetch a source (sources, compressed), read and validate its rows (rows, layouts), and land
them as one chunk per interval with a checkpoint in PostgreSQL (job)."""
