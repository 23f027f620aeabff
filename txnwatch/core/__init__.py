"""The shared core X, Y and every way to run them stand on: PostgreSQL (db), the object store (storage),
riding out outages (retry), errors, defaults and thresholds (config), paths, and the landing contract."""
