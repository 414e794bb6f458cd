"""Prefect Block ``SqlDatabase``: where a database lives and how to connect; one lazy engine
per process, disposed at the end, never pickled.

The password is a ``SecretStr``. ``url`` never holds one, on every path a block is saved by:

* built in Python, a password written into ``url`` (``postgresql://u:pw@h/db`` or
  ``?password=``) is moved into ``password``;
* the field's JSON schema carries a ``pattern`` that refuses a URL with a password, which the
  Prefect UI's form checks before it saves;
* Prefect's server stores block data from the API without checking it against the schema, so
  the schema also lists ``url`` among its ``secret_fields``: the server then shows it as
  ``********`` on the block page and API reads, and leaves it out of the
  ``prefect.block-document.*`` events, whatever a client sent.
"""

from __future__ import annotations

import weakref
from typing import Any

from prefect.blocks.core import Block, schema_extra
from pydantic import ConfigDict, Field, SecretStr, model_validator
from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError

from flowport.blocks import (
    LazyClients,
    docs_url,
    field_title,
    logo_url,
    refuse_foreign,
    replaces,
)
from flowport.errors import ConfigError
from flowport.secrets import reveal

#: Human names of SQLAlchemy dialects, for messages.
SYSTEMS = {
    "postgresql": "PostgreSQL",
    "mysql": "MySQL",
    "mariadb": "MariaDB",
    "sqlite": "SQLite",
    "mssql": "SQL Server",
    "oracle": "Oracle",
}

#: Query-string keys that carry a password in some drivers' URLs.
_SECRET_QUERY_KEYS = ("password", "passwd")


def _key_not_starting_with(prefix: str) -> str:
    """A regex (no look-around: Rust and JavaScript both run it) for one query-string key that
    does not start with ``prefix``, in either case."""
    other = "[^=&@]*"
    options = [""]
    for i, char in enumerate(prefix):
        head = "".join(f"[{c.lower()}{c.upper()}]" for c in prefix[:i])
        options.append(f"{head}[^{char.lower()}{char.upper()}=&@]{other}")
        if i:
            options.append(head)
    return "(?:" + "|".join(options) + ")"


#: A SQLAlchemy URL without a password: no ``user:...@`` (one ``@`` at most, no ``:`` before
#: it) and no query key starting with ``passw`` (password, passwd).
URL_PATTERN = (
    r"^[^:/?#@]+://(?:[^:@/?#]*@)?[^@?]*"
    rf"(?:\?{_key_not_starting_with('passw')}(?:=[^&@]*)?"
    rf"(?:&{_key_not_starting_with('passw')}(?:=[^&@]*)?)*)?$"
)


def _split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password (userinfo or ``?password=``), and that password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The message of ArgumentError repeats the URL; keep it out.
        raise ConfigError(
            "SQL database: 'url' is not a valid SQLAlchemy URL "
            "(expected dialect+driver://user@host:port/database)",
            system="SQL",
        ) from None  # its message repeats the URL, password and all
    password = parsed.password
    query = dict(parsed.query)
    for key in _SECRET_QUERY_KEYS:
        if key in query:
            value = query.pop(key)
            password = password or (value if isinstance(value, str) else value[0])
    # URL.set(password=None) means "unchanged"; build the URL without it instead.
    parsed = URL.create(
        parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, query
    )
    return parsed.render_as_string(hide_password=False), (
        str(password) if password is not None else None
    )


def _schema_extra(schema: dict[str, Any], model: type[Block]) -> None:
    """Prefect's block schema, with ``url`` among the secret fields: Prefect's server does not
    check block data against the schema, so a URL a client sent with a password in it is
    still never shown on the block page, in API reads or in events."""
    schema_extra(schema, model)
    schema["secret_fields"] = [*schema["secret_fields"], "url"]


_CONNECTOR_FIELDS = {
    "connection_info.driver": "drivername",
    "connection_info.username": "username",
    "connection_info.password": "password",
    "connection_info.host": "host",
    "connection_info.port": "port",
    "connection_info.database": "database",
    "connection_info.query": "query",
    "connection_info (a URL)": "url, with its password in password",
    "connect_args": "connect_args",
    "fetch_size": "the size argument of fetch_many / stream_query",
}


@replaces("prefect_sqlalchemy.SqlAlchemyConnector", _CONNECTOR_FIELDS)
@replaces(
    "prefect_sqlalchemy.AsyncSqlAlchemyConnector",
    {
        **_CONNECTOR_FIELDS,
        "connection_info.driver": "drivername (a sync driver: postgresql+psycopg)",
    },
)
@replaces(
    "prefect_sqlalchemy.DatabaseCredentials",
    {
        "driver": "drivername",
        "username": "username",
        "password": "password",
        "host": "host",
        "port": "port",
        "database": "database",
        "query": "query",
        "url": "url, with its password in password",
        "connect_args": "connect_args",
    },
)
class SqlDatabase(LazyClients, Block):
    """A SQL database reached through SQLAlchemy 2: a URL or its parts, pool settings and
    driver ``connect_args``. SQLite (the default, in memory) needs no extra package;
    ``flowport-sql[postgres]`` adds psycopg 3, ``flowport-sql[mysql]`` PyMySQL."""

    _block_type_slug = "flowport-sql-database"
    _block_type_name = "Flowport SQL Database"
    _logo_url = logo_url("flowport_sql")
    _documentation_url = docs_url("connectors/sql/")
    _description = (
        "A SQL database (PostgreSQL, MariaDB/MySQL, SQLite) for flowport's SQL tasks. Install: "
        "`pip install 'flowport-sql[postgres]'` (psycopg 3) or `'flowport-sql[mysql]'` "
        "(PyMySQL); SQLite needs no extra."
    )
    _code_example = """
    ```python
    from prefect import flow

    from flowport_sql import SqlDatabase, bulk_insert, fetch_all

    SqlDatabase(
        url="postgresql+psycopg://etl@db.internal:5432/warehouse", password="..."
    ).save("warehouse")


    @flow
    def load(rows):
        db = SqlDatabase.load("warehouse")
        bulk_insert(db, "events", rows)
        return fetch_all(db, "SELECT count(*) AS n FROM events")
    ```
    """

    model_config = ConfigDict(json_schema_extra=_schema_extra, field_title_generator=field_title)

    url: str | None = Field(
        default=None,
        title="SQLAlchemy URL (without password)",
        # In the schema only (what the UI's form checks): in Python the validator below has
        # already moved any password out, so there is nothing left to refuse.
        json_schema_extra={"pattern": URL_PATTERN},
        description=(
            "SQLAlchemy URL without the password, e.g. postgresql+psycopg://user@host:5432/db; "
            "put the password in the password field. Shown as ******** once saved. When set, "
            "the parts below are ignored except 'password'."
        ),
    )
    drivername: str = Field(
        default="sqlite",
        title="Dialect and driver",
        description="Dialect and driver, e.g. postgresql+psycopg, mysql+pymysql, sqlite.",
    )
    username: str | None = Field(default=None, description="User name.")
    password: SecretStr | None = Field(default=None, description="Password (kept secret).")
    host: str | None = Field(default=None, description="Server host.")
    port: int | None = Field(default=None, description="Server port.")
    database: str | None = Field(
        default=None, description="Database name (SQLite: file path; empty: in memory)."
    )
    query: dict[str, str] = Field(
        default_factory=dict,
        title="URL query parameters",
        description="Extra URL query parameters (driver options).",
    )
    pool_size: int = Field(default=5, ge=1, description="Connections kept open in the pool.")
    max_overflow: int = Field(
        default=10, ge=0, description="Extra connections allowed above pool_size under load."
    )
    pool_recycle: int = Field(
        default=1800,
        title="Pool recycle (s)",
        description="Replace pooled connections older than this many seconds (-1: never).",
    )
    pool_pre_ping: bool = Field(
        default=True,
        title="Test connections before use",
        description="Test a pooled connection before use (drops dead ones).",
    )
    pool_timeout: float = Field(
        default=30.0,
        gt=0,
        title="Pool timeout (s)",
        description="Seconds to wait for a free pooled connection.",
    )
    connect_timeout: int = Field(
        default=10,
        ge=1,
        title="Connect timeout (s)",
        description="Seconds to wait for a new connection (or SQLite lock).",
    )
    connect_args: dict[str, Any] = Field(
        default_factory=dict,
        title="DBAPI connect() arguments",
        description="Extra keyword arguments for the DBAPI connect() call (not secret).",
    )
    echo: bool = Field(
        default=False, title="Log statements", description="Log every statement (SQLAlchemy echo)."
    )

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_url(cls, data: Any) -> Any:
        refuse_foreign(data, where="SqlDatabase", expected="flowport_sql.SqlDatabase")
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            url, embedded = _split_password(data["url"])
            data = {**data, "url": url}
            if embedded is not None and data.get("password") is None:
                data["password"] = SecretStr(embedded)
        if isinstance(data, dict) and isinstance(data.get("query"), dict):
            query = dict(data["query"])
            found = [query.pop(k) for k in _SECRET_QUERY_KEYS if k in query]
            data = {**data, "query": query}
            if found and data.get("password") is None:
                data["password"] = SecretStr(str(found[0]))
        return data

    # -- naming, for messages --------------------------------------------------------

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: postgresql, mysql, mariadb, sqlite, ..."""
        name = make_url(self.url).get_backend_name() if self.url else self.drivername
        return name.split("+", 1)[0]

    @property
    def system(self) -> str:
        """Human name of the database system ("PostgreSQL", "MariaDB", "SQLite")."""
        return SYSTEMS.get(self.dialect, self.dialect)

    def describe(self) -> str:
        """``PostgreSQL database 'app' at db:5432``: names the database, never the password."""
        parsed = make_url(self.url) if self.url else None
        database = parsed.database if parsed else self.database
        host = parsed.host if parsed else self.host
        port = parsed.port if parsed else self.port
        if self.dialect == "sqlite":
            return f"SQLite database '{database or ':memory:'}'"
        where = f" at {host}:{port}" if port else (f" at {host}" if host else "")
        return f"{self.system} database '{database or ''}'{where}"

    # -- the engine ------------------------------------------------------------------

    def sqlalchemy_url(self) -> URL:
        """The full URL, password included. A ``URL`` object masks it in ``repr``/``str``."""
        password = reveal(self.password)
        if self.url:
            url = make_url(self.url)
            return url.set(password=password) if password is not None else url
        return URL.create(
            self.drivername,
            username=self.username,
            password=password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=self.query,
        )

    def _engine_options(self, url: URL) -> dict[str, Any]:
        connect_args = dict(self.connect_args)
        backend = url.get_backend_name()
        options: dict[str, Any] = {"echo": self.echo, "pool_pre_ping": self.pool_pre_ping}
        if backend == "sqlite":
            connect_args.setdefault("timeout", self.connect_timeout)  # busy (lock) timeout
            if url.database and url.database != ":memory:":
                options.update(pool_size=self.pool_size, max_overflow=self.max_overflow)
        else:
            connect_args.setdefault("connect_timeout", self.connect_timeout)
            options.update(
                pool_size=self.pool_size,
                max_overflow=self.max_overflow,
                pool_recycle=self.pool_recycle,
                pool_timeout=self.pool_timeout,
            )
        options["connect_args"] = connect_args
        return options

    def _make_engine(self) -> Engine:
        url = self.sqlalchemy_url()
        try:
            engine = create_engine(url, **self._engine_options(url))
        except ModuleNotFoundError as exc:
            extra = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}.get(
                url.get_backend_name(), ""
            )
            hint = f"; try: pip install 'flowport-sql[{extra}]'" if extra else ""
            raise ConfigError(
                f"{self.describe()}: the driver '{exc.name}' is not installed{hint}",
                system=self.system,
            ) from exc
        except (ArgumentError, TypeError) as exc:
            raise ConfigError(
                f"{self.describe()}: invalid engine settings ({type(exc).__name__}: {exc})",
                system=self.system,
            ) from exc
        # Close the pool's connections when this block goes away or the process ends.
        weakref.finalize(self, engine.dispose)
        return engine

    def engine(self) -> Engine:
        """The SQLAlchemy engine of this process, created on first use."""
        return self._client("engine", self._make_engine)

    def dispose(self) -> None:
        """Close this process's pooled connections; the next use builds a fresh engine."""
        for client in self._drop_clients():
            client.dispose()

    def __enter__(self) -> SqlDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()
