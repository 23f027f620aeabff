"""The read side: where X and Y are, what Y detected and how late, read from the PostgreSQL state by the
report, the live view, the Airflow readiness check, the demo and the benchmarks (read-only)."""
