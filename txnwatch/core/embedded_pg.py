"""An embedded PostgreSQL server under .local/, for machines that have none running."""

from __future__ import annotations

from txnwatch.core.errors import TxnwatchError
from txnwatch.core.paths import local_dir


def embedded_db_url() -> str:
    try:
        import pgserver
    except ImportError:
        raise TxnwatchError("no PostgreSQL server found and the pgserver package is not installed") from None
    # pgserver keeps the server running after this process exits and reuses it next time.
    server = pgserver.get_server(str(local_dir() / "pgdata"), cleanup_mode=None)
    return server.get_uri()
