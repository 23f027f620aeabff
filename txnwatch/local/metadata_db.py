"""Airflow's metadata database, migrated on first use: `txnwatch airflow <anything>`, `make airflow-up` and
`make demo` all call `ensure_migrated` first, so a fresh checkout needs no separate `db migrate` step.

The check is cheap (one query, no Airflow import): the database's `alembic_version` against the newest
migration shipped with the installed Airflow. Migrating happens once, under a PostgreSQL advisory lock
held on the metadata database, so two first commands started together migrate it once, not twice.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from txnwatch.core.errors import TxnwatchError

# Airflow's own locks (airflow.utils.db.DBLocks) are small integers: this one cannot collide with them.
MIGRATE_LOCK_KEY = 0x74786E77  # "txnw"
_REVISION = re.compile(r'^revision\s*=\s*["\'](\w+)["\']', re.M)
_DOWN = re.compile(r'^down_revision\s*=\s*(.+)$', re.M)


@lru_cache(maxsize=1)
def migration_head() -> str:
    """The newest migration revision of the installed Airflow, read from its migration scripts."""
    spec = importlib.util.find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        raise TxnwatchError("apache-airflow is not installed in this environment")
    versions = Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text()
        rev = _REVISION.search(text)
        if not rev:
            continue
        revisions.add(rev.group(1))
        down = _DOWN.search(text)
        if down:
            parents.update(re.findall(r"[\"'](\w+)[\"']", down.group(1)))
    heads = revisions - parents
    if len(heads) != 1:
        raise TxnwatchError(f"cannot tell Airflow's newest migration from {versions} (heads: {sorted(heads)})")
    return heads.pop()


def _libpq_url(metadata_url: str) -> str:
    # The SQLAlchemy URL names a driver (postgresql+psycopg2://); libpq wants the bare scheme.
    return re.sub(r"^postgresql\+\w+://", "postgresql://", metadata_url)


def current_revision(metadata_url: str) -> str | None:
    """The revision the metadata database is at; None when it was never migrated."""
    from txnwatch.core.db import connect

    with connect(_libpq_url(metadata_url), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


def needs_migration(metadata_url: str) -> bool:
    return current_revision(metadata_url) != migration_head()


def ensure_migrated(la, say: Callable[[str], None] | None = None, timeout: float = 900.0) -> bool:
    """Migrate the metadata database of `la` (a LocalAirflow) and register the DAG bundle, if needed.

    Returns True when this call migrated it. `dags reserialize` registers the DAG bundle, so concurrent
    `dags test` runs on a fresh database do not race to insert it.
    """
    from txnwatch.core.db import connect

    if not needs_migration(la.metadata_url):
        return False
    with connect(_libpq_url(la.metadata_url), autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
        try:
            if not needs_migration(la.metadata_url):  # another process migrated it while we waited
                return False
            if say:
                say(f"first use of the Airflow metadata database {la.metadata_url.rsplit('/', 1)[1]}: "
                    "migrating it (once)")
            for step in (["db", "migrate"], ["dags", "reserialize"]):
                out = subprocess.run([la.airflow_executable(), *step], env=la.env, capture_output=True,
                                     text=True, timeout=timeout)
                if out.returncode != 0:
                    tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
                    raise TxnwatchError(f"airflow {' '.join(step)} failed (exit {out.returncode}):\n{tail}")
            return True
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK_KEY,))
