"""Which errors the retry policy treats as an outage, how it retries, and DSN redaction."""

from __future__ import annotations

import logging

import psycopg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from txnwatch.db import redact
from txnwatch.retry import RetryPolicy, outage_of


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(("error", "service"), [
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), "PostgreSQL"),
    (psycopg.errors.SerializationFailure("could not serialize access"), "PostgreSQL"),
    (psycopg.OperationalError("connection failed: Connection refused"), "PostgreSQL"),
    (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), "PostgreSQL"),
    (psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "u"'), None),
    (psycopg.OperationalError('connection failed: FATAL:  database "x" does not exist'), None),
    (psycopg.errors.UndefinedTable('relation "s.y_checkpoint" does not exist'), None),
    (psycopg.errors.InvalidSchemaName('schema "s" does not exist'), None),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "S3"),
    (client_error(503, "SlowDown"), "S3"),
    (client_error(500, "InternalError"), "S3"),
    (client_error(403, "AccessDenied"), None),
    (client_error(404, "NoSuchBucket"), None),
    (ValueError("bad data"), None),
])
def test_only_connection_class_errors_are_outages(error, service):
    assert outage_of(error) == service


def test_a_unit_is_rerun_until_it_succeeds_with_one_warning(caplog):
    calls = []

    def unit():
        calls.append(1)
        if len(calls) < 4:
            raise psycopg.OperationalError("connection failed: Connection refused")
        return "done"

    with caplog.at_level(logging.WARNING, "txnwatch.retry"):
        assert RetryPolicy(10, backoff_first=0.01, backoff_max=0.02).run(unit, "a test unit") == "done"
    assert len(calls) == 4
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert warnings == ["PostgreSQL unreachable during a test unit (connection failed: Connection refused), "
                        "retrying for up to 10 s"]


def test_the_policy_gives_up_after_the_bound_with_the_last_error():
    def unit():
        raise client_error(503, "SlowDown")

    with pytest.raises(ClientError):
        RetryPolicy(0.3, backoff_first=0.01, backoff_max=0.05).run(unit, "a test unit")


def test_an_error_retrying_cannot_cure_is_raised_at_once():
    calls = []

    def unit():
        calls.append(1)
        raise client_error(403, "AccessDenied")

    with pytest.raises(ClientError):
        RetryPolicy(30).run(unit, "a test unit")
    assert len(calls) == 1


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=s3cret&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
    ("host=h user=u password=s3cret dbname=db", "user=u password=*** dbname=db host=h"),
    ("host=h password='s3cret with space' dbname=db", "password=*** dbname=db host=h"),
    ("host=h password=s3cret junk", "host=h password=*** junk"),  # not parsable: masked by pattern
])
def test_redact_hides_the_password_in_every_dsn_form(dsn, shown):
    assert redact(dsn) == shown
    assert "s3cret" not in redact(dsn)
