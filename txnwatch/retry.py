"""Riding out outages: which errors a retry can cure, and the one policy X and Y retry units of work with.

A unit of work is re-run from its start (Y: a whole batch transaction; X: one chunk's land-then-commit
step), after reconnecting, with capped exponential backoff and jitter (tenacity), until it succeeds or
the bound (default 120 s, `--retry-for` / TXNWATCH_RETRY_SECONDS) has passed since the outage began;
then the last error propagates and the CLI prints its one-line error. Only connection-class errors are
retried: a dropped or refused connection, an administrator shutdown, a serialization failure, S3 5xx,
throttling and connection errors. Bad credentials, a missing bucket or schema fail at once.

Within one attempt, botocore's own `standard` retry mode absorbs short S3 blips (a few attempts); this
policy takes over for longer outages.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_when_event_set,
    wait_random_exponential,
)

from txnwatch.errors import TxnwatchError, first_line

log = logging.getLogger("txnwatch.retry")
T = TypeVar("T")

DEFAULT_RETRY_SECONDS = 120.0
RETRY_ENV = "TXNWATCH_RETRY_SECONDS"
BACKOFF_FIRST_S = 0.25  # first wait (before jitter); doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 5.0
S3_MAX_ATTEMPTS = 4  # botocore's own attempts per call, before this policy's re-run of the unit

# SQLSTATE classes and codes a reconnect-and-rerun cures: connection exceptions (08), admin/crash
# shutdown and "cannot connect now" (57P01-57P03), serialization failure and deadlock (40001, 40P01).
_PG_TRANSIENT_STATES = ("57P01", "57P02", "57P03", "40001", "40P01")
# Connection failures carry no SQLSTATE (libpq reports them as text): these texts mean that retrying
# cannot help, e.g. a wrong password, an unknown role or database, a host name that does not resolve.
_PG_PERMANENT_TEXTS = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                       "authentication", "could not translate host name", "invalid", "permission denied")
_S3_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                       "ServiceUnavailable", "InternalError", "RequestLimitExceeded", "TooManyRequestsException"}


def retry_seconds(explicit: float | None = None) -> float:
    """The bound: the explicit value (CLI flag), else TXNWATCH_RETRY_SECONDS, else 120 s."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(RETRY_ENV, "")
    if not raw:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise TxnwatchError(f"{RETRY_ENV} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise TxnwatchError(f"{RETRY_ENV} must be >= 0, got {raw!r}")
    return value


def _pg_transient(e: psycopg.Error) -> bool:
    state = getattr(e, "sqlstate", None)
    if state:
        return state.startswith("08") or state in _PG_TRANSIENT_STATES
    if isinstance(e, psycopg.InterfaceError):
        return False  # a programming error on our side (e.g. a cursor used after close)
    if not isinstance(e, psycopg.OperationalError):
        return False
    text = str(e).lower()
    return not any(t in text for t in _PG_PERMANENT_TEXTS)


def _s3_transient(e: BaseException) -> bool:
    try:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
            ReadTimeoutError,
        )
    except ImportError:  # boto3 is only needed for s3:// locations
        return False
    if isinstance(e, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | ConnectTimeoutError
                  | HTTPClientError):
        return True
    if isinstance(e, ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = e.response.get("Error", {}).get("Code", "")
        return status >= 500 or status == 429 or code in _S3_TRANSIENT_CODES
    return False


def outage_of(e: BaseException) -> str | None:
    """The service a connection-class error came from ("PostgreSQL" or "S3"), or None if not retryable."""
    cause = e
    while cause is not None:  # an error raised while handling another: the root decides
        if isinstance(cause, psycopg.Error):
            return "PostgreSQL" if _pg_transient(cause) else None
        if _s3_transient(cause):
            return "S3"
        cause = getattr(cause, "transient_cause", None)
    return None


class TransientError(TxnwatchError):
    """A TxnwatchError wrapping a connection-class error, so wrappers can keep it retryable."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.transient_cause = cause


def s3_errors() -> tuple[type[Exception], ...]:
    """botocore's exception bases, or () when boto3 is not installed."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError)


def s3_client() -> Any:
    """An S3 client with botocore's standard retry mode and short connect/read timeouts, so a dead
    endpoint is noticed in seconds and left to the unit-of-work policy."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS}, connect_timeout=5,
                    read_timeout=20)
    # boto3 reads AWS_ENDPOINT_URL and the usual credential chain by itself.
    return boto3.client("s3", config=config)


@dataclass
class RetryPolicy:
    """Re-runs a unit of work while it fails with connection-class errors, for up to `seconds`."""

    seconds: float = DEFAULT_RETRY_SECONDS
    backoff_first: float = BACKOFF_FIRST_S
    backoff_max: float = BACKOFF_MAX_S

    def run(self, unit: Callable[[], T], what: str, stop: threading.Event | None = None) -> T:
        """`unit()` until it returns, the bound passes or `stop` is set (a SIGTERM during an outage).

        A unit reopens what it needs on each run (PgSession reconnects a broken connection)."""
        started: list[float] = []

        def warn(state: RetryCallState) -> None:
            e = state.outcome.exception()
            if not started:
                started.append(time.monotonic())
                log.warning("%s unreachable during %s (%s), retrying for up to %g s", outage_of(e), what,
                            first_line(e, limit=200), self.seconds)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: outage_of(e) is not None),
            wait=wait_random_exponential(multiplier=self.backoff_first, max=self.backoff_max),
            stop=stop_after_delay(self.seconds) | stop_when_event_set(stop or threading.Event()),
            before_sleep=warn, sleep=stop.wait if stop is not None else time.sleep, reraise=True)
        try:
            result = retrying(unit)
        except BaseException as e:
            if started and outage_of(e) is not None:
                log.error("%s still unreachable after %.0f s: giving up", outage_of(e),
                          time.monotonic() - started[0])
            raise
        if started:
            log.warning("%s: recovered after %.1f s", what, time.monotonic() - started[0])
        return result
