"""An embedded PostgreSQL server under .local/, for machines that have none running."""

from __future__ import annotations

import os
from pathlib import Path

from txnwatch.errors import TxnwatchError


def local_dir() -> Path:
    """The project's scratch folder (`.local/` of the checkout, or TXNWATCH_LOCAL_DIR)."""
    env = os.environ.get("TXNWATCH_LOCAL_DIR")
    root = Path(env) if env else Path.cwd() / ".local"
    root.mkdir(parents=True, exist_ok=True)
    return root


def embedded_db_url() -> str:
    try:
        import pgserver
    except ImportError:
        raise TxnwatchError("no PostgreSQL server found and the pgserver package is not installed") from None
    # pgserver keeps the server running after this process exits and reuses it next time.
    server = pgserver.get_server(str(local_dir() / "pgdata"), cleanup_mode=None)
    return server.get_uri()
