"""Riding out outages: what counts as one, and the one retry policy X and Y use for it.

A unit of work (Y: one loop step, whose batch is one Postgres transaction; X: one chunk's land-then-
commit) that fails on a connection-class error of PostgreSQL or the object store is re-run from its
start after a capped, jittered exponential backoff, for up to `bound` seconds (default 120). Then the
process ends with one line and a non-zero exit, and Airflow's retry takes over. Errors that retrying
cannot cure (bad credentials, a missing database, bucket or schema, bad SQL) are raised at once.

Single S3 calls are also retried by botocore's own `standard` mode (a few quick attempts for a 503
SlowDown); this policy covers the outages that outlast those.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import tenacity

from txnwatch.core import defaults
from txnwatch.core.errors import TxnwatchError, first_line

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
S3_ATTEMPTS = 3  # botocore's own attempts per call, before this policy's backoff

log = logging.getLogger("txnwatch.retry")
T = TypeVar("T")

# Server-reported states a reconnect cures: connection exceptions (class 08), shutdowns and restarts
# (57P01-57P03), a full server (53300), and transactions the server rolled back (40001, 40P01).
_PG_RETRY_STATES = {"57P01", "57P02", "57P03", "53300", "40001", "40P01"}
# A FATAL at connect time is a refusal (bad password, unknown database or role) unless it says the
# server is (re)starting, shutting down or full.
_PG_FATAL_TRANSIENT = ("the database system is", "too many clients", "remaining connection slots",
                       "terminating connection")
_PG_CONFIGURATION = ("could not translate host name",)
_S3_RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException",
                   "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}


class Unreachable(TxnwatchError):
    """A service cannot be reached right now (raised where the cause is ours to describe)."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


def _postgres_transient(e: BaseException) -> bool:
    state = getattr(e, "sqlstate", None)
    if state:
        return state.startswith("08") or state in _PG_RETRY_STATES
    text = str(e)
    if isinstance(e, psycopg.OperationalError):  # no server state: refused, timed out, dropped, lost
        if any(t in text for t in _PG_CONFIGURATION):
            return False
        return "FATAL" not in text or any(t in text for t in _PG_FATAL_TRANSIENT)
    # Using a connection the outage already closed.
    return isinstance(e, psycopg.InterfaceError) and "connection" in text


def _s3_transient(e: BaseException) -> bool:
    try:
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, IncompleteReadError
    except ImportError:  # boto3 is only needed for s3:// locations
        return False
    if isinstance(e, ConnectionError | HTTPClientError | IncompleteReadError):
        return True
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in _S3_RETRY_CODES or status >= 500
    return False


def service_of(e: BaseException) -> str | None:
    """'PostgreSQL' or 'S3' when `e` is an outage a retry can cure, else None."""
    if isinstance(e, Unreachable):
        return e.service
    if isinstance(e, psycopg.Error) and _postgres_transient(e):
        return "PostgreSQL"
    if _s3_transient(e):
        return "S3"
    return None


def is_transient(e: BaseException) -> bool:
    return service_of(e) is not None


class RetryPolicy:
    """Re-runs a unit of work through outages for up to `bound` seconds (0: never).

    `recover` runs before every re-run (reconnect, restore state); it may itself fail with an outage,
    which counts as one more failed attempt. A set `stop` event ends the waiting at once.
    """

    def __init__(self, bound: float = defaults.RETRY_SECONDS, stop: threading.Event | None = None,
                 describe: Callable[[BaseException], str] = first_line) -> None:
        if bound < 0:
            raise TxnwatchError("the retry bound must be >= 0 seconds")
        self.bound = bound
        self.stop = stop or threading.Event()
        self.describe = describe

    def run(self, work: Callable[[], T], recover: Callable[[], None] | None = None) -> T:
        started = time.monotonic()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient) & tenacity.retry_if_exception(
                lambda _e: not self.stop.is_set()),
            wait=tenacity.wait_random_exponential(multiplier=BACKOFF_FIRST_S, max=BACKOFF_MAX_S),
            stop=tenacity.stop_after_delay(self.bound),
            sleep=self.stop.wait,
            before_sleep=self._warn_once,
            retry_error_callback=self._give_up,
        )
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1 and recover is not None:
                    recover()
                result = work()
        n = retrying.statistics.get("attempt_number", 1)
        if n > 1:
            log.warning("reachable again after %.1f s (%d attempts); carrying on", time.monotonic() - started, n)
        return result

    def _warn_once(self, state: tenacity.RetryCallState) -> None:
        if state.attempt_number == 1:
            e = state.outcome.exception()
            log.warning("%s unreachable (%s), retrying for up to %.0f s", service_of(e), self.describe(e),
                        self.bound)

    def _give_up(self, state: tenacity.RetryCallState):
        e = state.outcome.exception()
        service = service_of(e)
        if service is None:  # not an outage (or a stop request arrived): the error as it is
            raise e
        raise Unreachable(service, f"{service} unreachable for {time.monotonic() - state.start_time:.0f} s "
                                   f"(bound {self.bound:.0f} s): {self.describe(e)}") from None


def s3_config():
    """botocore settings for every S3 client of X and Y: standard retries, bounded timeouts."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": S3_ATTEMPTS}, connect_timeout=5, read_timeout=30,
                  tcp_keepalive=True)
