"""Retry classification and error translation, with the drivers' real exception classes."""

from __future__ import annotations

import sqlite3

import psycopg
import pymysql
import pytest
from sqlalchemy import exc as sa_exc

from flowport.errors import AuthError, Conflict, InvalidInput, NotFound, TransientError
from flowport_sql.errors import is_disconnect, is_transient, translate


def wrap(orig: Exception, base: type[Exception]) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError.instance("UPDATE t SET a = 1\nWHERE b = 2", {"b": 2}, orig, base)


PG_TRANSIENT = [
    psycopg.errors.SerializationFailure("could not serialize access"),
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.CannotConnectNow("the database system is starting up"),
    psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
    psycopg.OperationalError("connection failed: Connection refused"),
]
PG_PERMANENT = [
    psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
    psycopg.errors.SyntaxError("syntax error at or near"),
    psycopg.errors.UndefinedTable('relation "x" does not exist'),
    psycopg.errors.InvalidTextRepresentation("invalid input syntax for type integer"),
    psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "u"'
    ),
]
MY_TRANSIENT = [
    pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
    pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
    pymysql.err.OperationalError(2006, "MySQL server has gone away"),
]
MY_PERMANENT = [
    pymysql.err.IntegrityError(1062, "Duplicate entry '5' for key 'PRIMARY'"),
    pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
    pymysql.err.ProgrammingError(1146, "Table 'x.y' doesn't exist"),
    pymysql.err.OperationalError(1045, "Access denied for user 'u'@'h'"),
]


@pytest.mark.parametrize("orig", PG_TRANSIENT, ids=lambda e: type(e).__name__)
def test_postgres_transient(orig: Exception) -> None:
    assert is_transient(wrap(orig, psycopg.Error)) and is_transient(orig)


@pytest.mark.parametrize("orig", PG_PERMANENT, ids=lambda e: type(e).__name__)
def test_postgres_permanent(orig: Exception) -> None:
    assert not is_transient(wrap(orig, psycopg.Error)) and not is_transient(orig)


@pytest.mark.parametrize("orig", MY_TRANSIENT, ids=lambda e: str(e.args[0]))
def test_mysql_transient(orig: Exception) -> None:
    assert is_transient(wrap(orig, pymysql.err.Error))


@pytest.mark.parametrize("orig", MY_PERMANENT, ids=lambda e: str(e.args[0]))
def test_mysql_permanent(orig: Exception) -> None:
    assert not is_transient(wrap(orig, pymysql.err.Error))


def test_sqlite_lock_is_transient_and_syntax_is_not() -> None:
    assert is_transient(wrap(sqlite3.OperationalError("database is locked"), sqlite3.Error))
    assert not is_transient(wrap(sqlite3.OperationalError('near "X": syntax error'), sqlite3.Error))
    assert is_transient(sa_exc.TimeoutError("QueuePool limit reached"))
    invalidated = wrap(psycopg.errors.UniqueViolation("x"), psycopg.Error)
    invalidated.connection_invalidated = True
    assert is_transient(invalidated)


def test_disconnects() -> None:
    assert is_disconnect(
        wrap(psycopg.OperationalError("server closed the connection unexpectedly"), psycopg.Error)
    )
    assert is_disconnect(
        wrap(pymysql.err.OperationalError(2013, "Lost connection"), pymysql.err.Error)
    )
    assert not is_disconnect(wrap(psycopg.errors.DeadlockDetected("deadlock"), psycopg.Error))
    assert not is_disconnect(wrap(sqlite3.OperationalError("database is locked"), sqlite3.Error))


@pytest.mark.parametrize(
    ("orig", "base", "kind"),
    [
        (psycopg.errors.SerializationFailure("could not serialize"), psycopg.Error, TransientError),
        (
            psycopg.errors.UniqueViolation("duplicate key\nDETAIL:  Key (b)=(2) exists."),
            psycopg.Error,
            Conflict,
        ),
        (psycopg.errors.UndefinedTable('relation "t" does not exist'), psycopg.Error, NotFound),
        (psycopg.errors.SyntaxError("syntax error"), psycopg.Error, InvalidInput),
        (
            pymysql.err.OperationalError(1045, "Access denied for user"),
            pymysql.err.Error,
            AuthError,
        ),
        (
            pymysql.err.IntegrityError(1062, "Duplicate entry 'secret-val' for key 'b'"),
            pymysql.err.Error,
            Conflict,
        ),
    ],
)
def test_translate_names_database_and_first_line_only(
    orig: Exception, base: type, kind: type
) -> None:
    err = translate(
        wrap(orig, base),
        "PostgreSQL database 'app' at h:5",
        "UPDATE t SET a = 1\nWHERE b = 2",
        {"b": "secret-val"},
    )
    assert isinstance(err, kind)
    text = str(err)
    assert text.startswith(
        "PostgreSQL database 'app' at h:5: running 'UPDATE t SET a = 1' failed ("
    )
    assert "WHERE" not in text and "secret-val" not in text and "DETAIL" not in text
    assert "[parameters" not in text and "[SQL" not in text
