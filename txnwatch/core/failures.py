"""The one translation of what a long-running job could not ride out into a one-line TxnwatchError.

X and Y retry outages of PostgreSQL and the object store (retry.py); what still escapes them (a failure
that is not an outage, or an outage past its bound that is not already an Unreachable) ends the job with
one line that names the service, never a traceback and never a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from txnwatch.core.db import redact, scrub
from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.storage import s3_errors


@contextmanager
def job_failures(db_url: str, s3: str, files: bool = False) -> Iterator[None]:
    """PostgreSQL errors as `PostgreSQL at <url> failed: ...`; S3 errors as `<s3>: ...`; with `files`, OS
    errors as `file system error: ...` (a local landing zone)."""
    try:
        yield
    except psycopg.Error as e:
        raise TxnwatchError(f"PostgreSQL at {redact(db_url)} failed: {scrub(first_line(e))}") from None
    except OSError as e:
        if not files:
            raise
        where = f" ({e.filename})" if e.filename else ""
        raise TxnwatchError(f"file system error: {e.strerror or e}{where}") from None
    except s3_errors() as e:
        raise TxnwatchError(f"{s3}: {first_line(e)}") from None
