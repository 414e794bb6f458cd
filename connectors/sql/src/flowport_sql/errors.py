"""Which database errors are transient, and clear messages for the permanent ones.

Transient (the whole transaction unit is retried): dropped or invalidated connections,
server restarts and shutdowns, refused connections, connect and lock timeouts, PostgreSQL
serialization failures (40001) and deadlocks (40P01), MySQL/MariaDB deadlocks (1213) and lock
wait timeouts (1205), SQLite "database is locked", a full connection pool.

Permanent (raised at once): integrity, programming (syntax, unknown table or column), data
and authentication errors. Messages name the database (host / name, never the password) and
the statement's first line; parameter values are never included.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import exc as sa_exc

from flowport.errors import (
    AuthError,
    ConfigError,
    Conflict,
    FlowportError,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
)
from flowport.secrets import redact

#: PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout,
#: too many connections, server shutting down / starting up, crash recovery.
PG_TRANSIENT_STATES = {"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03", "58000"}
#: PostgreSQL SQLSTATE classes that are connection failures (08xxx).
PG_TRANSIENT_CLASSES = ("08",)
#: PostgreSQL SQLSTATEs of authentication / authorisation failures.
PG_AUTH_STATES = {"28000", "28P01", "42501"}
#: MySQL/MariaDB error numbers worth a retry: deadlock, lock wait timeout, too many
#: connections, server shutdown, connection killed / lost / gone away / refused.
MYSQL_TRANSIENT_CODES = {
    1213,
    1205,
    1040,
    1053,
    1077,
    1078,
    1079,
    1080,
    1152,
    1153,
    1154,
    1155,
    1156,
    1157,
    1158,
    1159,
    1160,
    1161,
    1927,
    2002,
    2003,
    2006,
    2013,
    2014,
    2055,
    4031,
}
#: MySQL/MariaDB error numbers of authentication / access failures.
MYSQL_AUTH_CODES = {1044, 1045, 1142, 1143, 1227, 1698}

_DISCONNECT_WORDS = re.compile(
    r"server closed the connection|connection (?:refused|reset|timed out|is closed|already "
    r"closed|failed)|terminating connection|lost connection|gone away|broken pipe|"
    r"consuming input failed|could not receive data|could not send data|ssl syscall|"
    r"the database system is (?:starting up|shutting down|in recovery mode)|timeout expired|"
    r"database is locked|database table is locked",
    re.I,
)
_AUTH_WORDS = re.compile(
    r"password authentication failed|authentication failed|access denied|no pg_hba\.conf",
    re.I,
)

# SQLite reports syntax and schema mistakes as OperationalError.
_SQL_WORDS = re.compile(r"syntax error|no such column|has no column|no such function", re.I)


def _driver_error(exc: BaseException) -> BaseException:
    """The DBAPI exception under a SQLAlchemy wrapper (or ``exc`` itself)."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL SQLSTATE of ``exc`` (psycopg 3 / psycopg2), if any."""
    err = _driver_error(exc)
    state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    return state if isinstance(state, str) else None


def mysql_code(exc: BaseException) -> int | None:
    """MySQL/MariaDB error number of ``exc`` (PyMySQL, mysqlclient), if any."""
    err = _driver_error(exc)
    module = type(err).__module__
    if module.startswith(("pymysql", "MySQLdb", "mysql")) and err.args:
        code = err.args[0]
        return code if isinstance(code, int) else None
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass when the whole transaction unit is tried again."""
    if isinstance(exc, FlowportError):
        return exc.transient
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True  # a dropped pooled connection; no free connection in the pool
    state = sqlstate(exc)
    if state is not None:
        return state in PG_TRANSIENT_STATES or state.startswith(PG_TRANSIENT_CLASSES)
    code = mysql_code(exc)
    if code is not None:
        return code in MYSQL_TRANSIENT_CODES
    err = _driver_error(exc)
    if isinstance(err, ConnectionError | TimeoutError | socket.timeout | BrokenPipeError):
        return True
    if isinstance(exc, sa_exc.OperationalError) or type(err).__name__ == "OperationalError":
        # No SQLSTATE / error number: connection-level failures (refused, closed, timed
        # out) and SQLite locks are transient; an auth failure or a missing database is not.
        text = str(err)
        return bool(_DISCONNECT_WORDS.search(text)) and not _AUTH_WORDS.search(text)
    return False


def is_disconnect(exc: BaseException) -> bool:
    """True when the connection itself was lost (the outcome of a COMMIT is then unknown)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa_exc.DisconnectionError):
            return True
        state = sqlstate(seen)
        if state is not None and (state.startswith("08") or state in {"57P01", "57P02"}):
            return True
        code = mysql_code(seen)
        if code in {2006, 2013, 2055, 1927, 1053, 4031}:
            return True
        err = _driver_error(seen)
        if isinstance(err, ConnectionError | BrokenPipeError):
            return True
        if state is None and code is None and type(err).__name__ == "OperationalError":
            text = str(err)
            if _DISCONNECT_WORDS.search(text) and "locked" not in text:
                return True
        seen = seen.__cause__
    return False


def first_line(statement: Any) -> str:
    """The first non-empty line of a statement, shortened: what a message may show."""
    text = str(statement).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 160 else line[:157] + "..."


def _param_values(params: Any) -> Iterable[str]:
    """String forms of bound values (to mask them should a driver echo one)."""
    if params is None:
        return
    if isinstance(params, Mapping):
        params = [params]
    if isinstance(params, list | tuple):
        for item in params[:1000]:
            values = (
                item.values()
                if isinstance(item, Mapping)
                else (item if isinstance(item, list | tuple) else [item])
            )
            for value in values:
                text = str(value)
                if len(text) >= 3:
                    yield text


def driver_message(exc: BaseException, params: Any = None) -> str:
    """The driver's own one-line message: no SQL, no ``[parameters: ...]``, no bound values,
    no DETAIL lines (PostgreSQL puts row values there), no secrets."""
    err = _driver_error(exc)
    text = (
        first_line(err)
        if not isinstance(err, sa_exc.SQLAlchemyError)
        else first_line(str(err).split("\n[SQL:", 1)[0])
    )
    code = mysql_code(exc)
    if code is not None and len(err.args) > 1:
        text = f"({code}) {first_line(err.args[1])}"
    for value in sorted(set(_param_values(params)), key=len, reverse=True):
        text = text.replace(value, "***")
    # MySQL echoes the offending value: "Duplicate entry '42' for key 'PRIMARY'".
    text = re.sub(r"(Duplicate entry|Incorrect \w+ value:?) '[^']*'", r"\1 '***'", text)
    return redact(text)


def translate(
    exc: BaseException, where: str, statement: Any = None, params: Any = None, system: str = "SQL"
) -> FlowportError:
    """A flowport error naming the database (``where``), the statement's first line and the
    cause; raise it ``from exc``. Flowport errors pass through unchanged."""
    if isinstance(exc, FlowportError):
        return exc
    cause = f"{type(_driver_error(exc)).__name__}: {driver_message(exc, params)}"
    stmt = f" running '{first_line(statement)}'" if statement is not None else ""
    message = redact(f"{where}:{stmt} failed ({cause})")
    kwargs: dict[str, Any] = {"system": system, "target": where}
    if is_transient(exc):
        return TransientError(message, **kwargs)
    state, code = sqlstate(exc), mysql_code(exc)
    err = _driver_error(exc)
    if state in PG_AUTH_STATES or code in MYSQL_AUTH_CODES or _AUTH_WORDS.search(str(err)):
        return AuthError(message, **kwargs)
    text = str(err)
    if state in {"42P01", "3D000"} or code in {1146, 1049} or "no such table" in text:
        return NotFound(message, **kwargs)
    if isinstance(exc, sa_exc.IntegrityError):
        return Conflict(message, **kwargs)
    if (
        isinstance(exc, sa_exc.DataError | sa_exc.ProgrammingError)
        or _SQL_WORDS.search(text)
        or (isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError))
    ):
        return InvalidInput(message, **kwargs)
    if isinstance(exc, sa_exc.ArgumentError | sa_exc.NoSuchModuleError):
        return ConfigError(message, **kwargs)
    return PermanentError(message, **kwargs)
