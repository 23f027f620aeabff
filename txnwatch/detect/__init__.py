"""Mechanism Y, the Spark detection job: read the landed chunks (reader), keep the running state in memory
and in PostgreSQL (live_state, state), evaluate the rules, write the detection files (output); job runs it."""
