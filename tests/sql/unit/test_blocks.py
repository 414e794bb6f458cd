"""SqlDatabase: URL or parts, the password never shown, lazy engine, pickling; its catalog
entry; prefect-sqlalchemy blocks refused."""

from __future__ import annotations

import ast
import base64
import logging
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path
from uuid import uuid4

import cloudpickle
import pytest
from pydantic import SecretStr

from flowport.errors import ConfigError, TransientError
from flowport.retry import RetryPolicy
from flowport_sql import SqlDatabase, execute, fetch_one
from flowport_sql.blocks import _split_password

PW = "Sup3r-S3cret-pw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://alice:{PW}@db.example:5433/app",
        f"mysql+pymysql://alice:{PW}@db.example:3306/app?charset=utf8mb4",
        f"postgresql+psycopg://alice@db.example/app?password={PW}",
    ],
)
def test_password_in_url_is_moved_into_a_secret(url: str) -> None:
    db = SqlDatabase(url=url)
    assert isinstance(db.password, SecretStr) and db.password.get_secret_value() == PW
    for shown in (
        repr(db),
        str(db),
        str(db.model_dump()),
        db.model_dump_json(),
        str(db.sqlalchemy_url()),
        db.describe(),
        str(db._to_block_document(name="x", block_schema_id=uuid4(), block_type_id=uuid4()).data),
    ):
        assert PW not in shown
    assert "alice" in db.url and "db.example" in db.describe()
    # The full URL still reaches the driver.
    assert db.sqlalchemy_url().render_as_string(hide_password=False).count(PW) == 1


def test_password_among_the_query_parameters_is_moved_into_a_secret() -> None:
    db = SqlDatabase(
        drivername="postgresql+psycopg",
        username="u",
        host="h",
        database="d",
        query={"sslmode": "require", "password": PW},
    )
    assert db.query == {"sslmode": "require"}
    assert isinstance(db.password, SecretStr) and db.password.get_secret_value() == PW
    assert PW not in repr(db) and PW not in str(db.model_dump())
    assert db.sqlalchemy_url().render_as_string(hide_password=False).count(PW) == 1


def test_percent_encoded_password_is_decoded() -> None:
    url, password = _split_password("postgresql://u:p%40ss%2Fw@h/db")
    assert password == "p@ss/w" and "p%40" not in url


def test_parts_and_describe(tmp_path: Path) -> None:
    db = SqlDatabase(
        drivername="postgresql+psycopg", username="u", password=PW, host="h", port=5, database="d"
    )
    assert db.describe() == "PostgreSQL database 'd' at h:5"
    assert db.system == "PostgreSQL" and db.dialect == "postgresql"
    assert SqlDatabase().describe() == "SQLite database ':memory:'"
    assert SqlDatabase(url="mariadb+pymysql://u@h:3/x").system == "MariaDB"


def test_invalid_url_never_echoes_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        SqlDatabase(url=f"not a url :{PW}@")
    assert PW not in str(info.value) and info.value.__cause__ is None


def test_missing_driver_names_the_extra() -> None:
    db = SqlDatabase(url=f"mysql+mysqldb://u:{PW}@127.0.0.1/x")
    with pytest.raises(ConfigError, match=r"flowport-sql\[mysql\]") as info:
        db.engine()
    assert PW not in str(info.value)


def test_connection_failure_is_transient_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = SqlDatabase(url=f"postgresql+psycopg://alice:{PW}@127.0.0.1:{port}/app", connect_timeout=2)
    policy = RetryPolicy(attempts=2, initial_delay=0, max_delay=0)
    with caplog.at_level(logging.DEBUG), pytest.raises(TransientError) as info:
        fetch_one.fn(db, "SELECT 1", retry_policy=policy)
    assert f"127.0.0.1:{port}" in str(info.value) and "'app'" in str(info.value)
    assert PW not in str(info.value) and PW not in caplog.text
    assert "attempt 1/2 failed" in caplog.text


def test_engine_is_lazy_per_block_and_disposed(tmp_path: Path) -> None:
    db = SqlDatabase(database=str(tmp_path / "a.db"), pool_size=2, max_overflow=1)
    assert db._clients == {}
    engine = db.engine()
    assert db.engine() is engine and engine.pool.size() == 2
    db.dispose()
    assert db._clients == {} and db.engine() is not engine
    with SqlDatabase(database=str(tmp_path / "b.db")) as other:
        execute.fn(other, "CREATE TABLE x (a INTEGER)")
        assert other._clients
    assert other._clients == {}


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_block_pickles_without_its_engine(tmp_path: Path, dumps: object) -> None:
    db = SqlDatabase(url=f"sqlite:///{tmp_path / 'p.db'}")
    execute.fn(db, "CREATE TABLE x (a INTEGER)")
    execute.fn(db, "INSERT INTO x VALUES (7)")
    data = dumps(db)  # type: ignore[operator]
    copy = pickle.loads(data)
    assert copy._clients == {}
    assert fetch_one.fn(copy, "SELECT a FROM x") == {"a": 7}
    assert copy.engine() is not db.engine()


def test_password_survives_pickling() -> None:
    db = SqlDatabase(url=f"postgresql+psycopg://u:{PW}@h/d")
    copy = pickle.loads(cloudpickle.dumps(db))
    assert copy.password is not None and copy.password.get_secret_value() == PW
    assert copy.model_dump() == db.model_dump()


def _api_block(name: str, data: dict[str, object]) -> tuple[object, object]:
    """Create a block document from raw JSON through Prefect's API, as the UI form or any
    client does (no Python model runs), and read it back as the block page does."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate

    SqlDatabase.register_type_and_schema()  # what `prefect block register` does
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("flowport-sql-database")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
        assert schema is not None
        doc = client.create_block_document(
            BlockDocumentCreate(
                name=name, data=data, block_schema_id=schema.id, block_type_id=block_type.id
            )
        )
        return schema, client.read_block_document(doc.id, include_secrets=False)


def _events_about(resource_id: str) -> list[dict[str, object]]:
    """The events Prefect's server stored about one resource, waiting for them to land."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            response = client.request(
                "POST",
                "/events/filter",
                json={"filter": {"resource": {"id": [resource_id]}}, "limit": 50},
            )
            events: list[dict[str, object]] = response.json()["events"]
            if events or time.monotonic() > deadline:
                return events
            time.sleep(0.2)


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://alice:{PW}@db.example:5433/app",
        f"postgresql+psycopg://alice@db.example:5433/app?sslmode=require&password={PW}",
    ],
)
def test_password_in_url_sent_through_the_api_is_refused_by_the_schema_and_never_shown(
    url: str,
) -> None:
    import json

    from prefect.utilities.schema_tools import validate

    name = f"sql-api-{uuid4().hex[:8]}"
    schema, shown = _api_block(name, {"url": url})
    # The UI's form checks the schema's pattern before it saves: refused.
    assert validate({"url": url}, schema.fields)  # type: ignore[attr-defined]
    assert not validate(
        {"url": "postgresql+psycopg://alice@db.example:5433/app?sslmode=require"},
        schema.fields,  # type: ignore[attr-defined]
    )
    # Prefect's server stores API data unchecked, so the URL is a secret field to it: the
    # block page / API read and the stored created-event never show the password.
    assert PW not in json.dumps(shown.data)  # type: ignore[attr-defined]
    events = _events_about(f"prefect.block-document.{shown.id}")  # type: ignore[attr-defined]
    assert [e["event"] for e in events] == ["prefect.block-document.created"]
    assert PW not in json.dumps(events)
    # Loaded in Python, the password leaves the URL for the secret field.
    loaded = SqlDatabase.load(name)
    assert loaded.url is not None and PW not in loaded.url
    assert loaded.password is not None and loaded.password.get_secret_value() == PW


@pytest.mark.usefixtures("prefect_server")
def test_block_saved_from_python_keeps_the_url_without_password() -> None:
    name = f"sql-py-{uuid4().hex[:8]}"
    SqlDatabase(url=f"postgresql+psycopg://alice:{PW}@db.example/app").save(name)
    loaded = SqlDatabase.load(name)
    assert loaded.url == "postgresql+psycopg://alice@db.example/app"
    assert loaded.password is not None and loaded.password.get_secret_value() == PW


# -- Prefect's block catalog ----------------------------------------------------------------


def test_catalog_entry_is_complete() -> None:
    from flowport.blocks import DOCS_URL, catalog_problems, code_example_source

    assert catalog_problems(SqlDatabase) == []
    assert str(SqlDatabase._logo_url) == f"{DOCS_URL}logos/flowport_sql.svg"
    assert str(SqlDatabase._documentation_url) == f"{DOCS_URL}connectors/sql/"
    description = SqlDatabase.get_description() or ""
    assert "pip install 'flowport-sql[postgres]'" in description
    source = code_example_source(SqlDatabase)
    assert 'SqlDatabase.load("warehouse")' in source
    ast.parse(source)


def test_logo_is_a_valid_svg_data_url() -> None:
    from flowport.blocks import logo_data_url

    url = logo_data_url("flowport_sql")
    assert url.startswith("data:image/svg+xml;base64,")
    root = ET.fromstring(base64.b64decode(url.split(",", 1)[1]))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "SQL" in "".join(root.itertext())


def test_field_titles_are_human_and_the_schema_keeps_its_secret_fields() -> None:
    schema = SqlDatabase.model_json_schema()
    titles = {name: prop["title"] for name, prop in schema["properties"].items()}
    assert titles["url"] == "SQLAlchemy URL (without password)"
    assert titles["drivername"] == "Dialect and driver"
    assert titles["connect_args"] == "DBAPI connect() arguments"
    assert titles["pool_pre_ping"] == "Test connections before use"
    assert titles["pool_size"] == "Pool size"
    assert set(schema["secret_fields"]) == {"password", "url"}


@pytest.mark.usefixtures("prefect_server")
def test_catalog_entry_reaches_prefects_server() -> None:
    """What the block catalog page reads: logo, documentation link, description, code example
    and the human titles in the stored schema."""
    from prefect.client.orchestration import get_client

    SqlDatabase.register_type_and_schema()
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("flowport-sql-database")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
    assert str(block_type.logo_url) == str(SqlDatabase._logo_url)
    assert str(block_type.documentation_url) == str(SqlDatabase._documentation_url)
    assert "pip install" in (block_type.description or "")
    assert 'SqlDatabase.load("warehouse")' in (block_type.code_example or "")
    assert schema is not None
    assert schema.fields["properties"]["drivername"]["title"] == "Dialect and driver"


# -- prefect-sqlalchemy blocks are refused --------------------------------------------------


def _connector() -> object:
    """A real prefect-sqlalchemy block (prefect-sqlalchemy is a test requirement only)."""
    from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector, SyncDriver

    return SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=SyncDriver.POSTGRESQL_PSYCOPG2,
            username="alice",
            password=PW,
            host="db.example",
            port=5432,
            database="app",
        )
    )


def test_prefect_sqlalchemy_connector_refused_by_the_tasks_with_the_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        execute.fn(_connector(), "SELECT 1")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(
        "execute(database=...) got a prefect-sqlalchemy block "
        "(prefect_sqlalchemy.SqlAlchemyConnector); flowport's blocks do not take "
        "prefect-sqlalchemy blocks. Use flowport_sql.SqlDatabase"
    )
    assert "connection_info.driver -> drivername" in message
    assert "connect_args -> connect_args" in message
    assert PW not in message


def test_prefect_sqlalchemy_connector_refused_as_a_sql_database() -> None:
    with pytest.raises(ConfigError, match=r"^SqlDatabase got a prefect-sqlalchemy block") as caught:
        SqlDatabase.model_validate(_connector())
    assert PW not in str(caught.value)


def test_old_prefect_sqlalchemy_database_credentials_refused() -> None:
    """``DatabaseCredentials`` is gone from prefect-sqlalchemy 0.6; a stand-in of an older
    release's class (told apart by its module) is refused with its own mapping."""
    old = type("DatabaseCredentials", (), {"__module__": "prefect_sqlalchemy.credentials"})()
    with pytest.raises(ConfigError) as caught:
        fetch_one.fn(old, "SELECT 1")
    message = str(caught.value)
    assert "(prefect_sqlalchemy.DatabaseCredentials)" in message
    assert "driver -> drivername" in message and "url -> url" in message
