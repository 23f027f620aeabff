"""Mechanism X: fetch a source (sources, compressed), read and validate its rows (rows, layouts), cut them
into chunks (chunks), land one per interval (job) and record each in PostgreSQL (ledger)."""
