"""LazyClients: one client per process, never pickled, secrets hidden in block dumps; the
block catalog helpers; prefect-aws / -gcp / -sqlalchemy blocks refused."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest
from prefect.blocks.core import Block
from pydantic import SecretStr

from flowport.blocks import BLOCK_CONFIG, LazyClients, docs_url, install_hint, logo_url
from flowport.errors import ConfigError
from flowport.task import RetryingTask


class Unpicklable:
    """Stands in for a boto3 / SQLAlchemy client: refuses to be pickled."""

    def __reduce__(self) -> str:
        raise TypeError("clients do not pickle")


class DemoBlock(LazyClients, Block):
    _block_type_slug = "flowport-test-demo-block"

    endpoint: str
    password: SecretStr

    def client(self) -> Unpicklable:
        return self._client("main", Unpicklable)


def test_client_built_once_per_process() -> None:
    block = DemoBlock(endpoint="http://127.0.0.1:1", password=SecretStr("pw-0123456789"))
    assert block.client() is block.client()


def test_block_pickles_without_its_client_and_rebuilds() -> None:
    block = DemoBlock(endpoint="http://127.0.0.1:1", password=SecretStr("pw-0123456789"))
    first = block.client()
    for dumps in (pickle.dumps, cloudpickle.dumps):
        clone = pickle.loads(dumps(block))
        assert clone.endpoint == block.endpoint
        assert clone.password.get_secret_value() == "pw-0123456789"
        assert clone.client() is not first
        assert clone.client() is clone.client()


def test_secret_hidden_in_repr_and_dump() -> None:
    block = DemoBlock(endpoint="http://127.0.0.1:1", password=SecretStr("pw-0123456789"))
    assert "pw-0123456789" not in repr(block)
    assert "pw-0123456789" not in str(block.model_dump())
    assert "pw-0123456789" not in block.model_dump_json()


def test_copies_never_share_clients() -> None:
    block = DemoBlock(endpoint="http://127.0.0.1:1", password=SecretStr("pw-0123456789"))
    first = block.client()
    moved = block.model_copy(update={"endpoint": "http://127.0.0.1:2"})
    assert moved.client() is not first
    assert block.client() is first
    assert block.model_copy(deep=True).client() is not first


# -- the block catalog helpers --------------------------------------------------------------


def test_field_titles_are_sentence_case_with_acronyms() -> None:
    from flowport.blocks import field_title

    assert field_title("aws_access_key_id") == "AWS access key ID"
    assert field_title("endpoint_url") == "Endpoint URL"
    assert field_title("sasl_mechanism") == "SASL mechanism"
    assert field_title("verify_tls") == "Verify TLS"
    assert field_title("bucket") == "Bucket"


def test_packaged_logo_is_a_valid_svg_data_url() -> None:
    import base64
    import xml.etree.ElementTree as ET

    from flowport.blocks import DOCS_URL, logo_data_url, logo_url

    url = logo_data_url("flowport")
    assert url.startswith("data:image/svg+xml;base64,")
    root = ET.fromstring(base64.b64decode(url.split(",", 1)[1]))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 64 64"
    assert str(logo_url("flowport")) == f"{DOCS_URL}logos/flowport.svg"


def test_catalog_problems_names_everything_a_bare_block_lacks() -> None:
    from flowport.blocks import catalog_problems

    problems = catalog_problems(DemoBlock)
    assert any("_logo_url" in p for p in problems)
    assert any("_documentation_url" in p for p in problems)
    assert any("install hint" in p for p in problems)
    assert any("_code_example" in p for p in problems)


class CatalogBlock(Block):
    """A complete catalog entry except for what each test breaks."""

    _block_type_slug = "flowport-test-catalog-block"
    _logo_url = logo_url("flowport")
    _documentation_url = docs_url("connectors/demo/")
    _description = f"A demo. {install_hint('flowport')}"
    _code_example = """
    ```python
    from flowport.blocks import LazyClients

    print(LazyClients)
    ```
    """
    model_config = BLOCK_CONFIG

    access_key_id: str = "x"


def test_catalog_problems_empty_for_a_complete_block_and_checks_the_example() -> None:
    from flowport.blocks import catalog_problems

    assert catalog_problems(CatalogBlock, "flowport") == []
    assert CatalogBlock.model_fields["access_key_id"].title == "Access key ID"

    class BadExample(CatalogBlock):
        _block_type_slug = "flowport-test-bad-example"
        _code_example = "```python\nfrom flowport.blocks import NoSuchThing\nx = (\n```"

    assert any("does not parse" in p for p in catalog_problems(BadExample, "flowport"))

    class MissingName(CatalogBlock):
        _block_type_slug = "flowport-test-missing-name"
        _code_example = "```python\nfrom flowport.blocks import NoSuchThing\n```"

    class Escaped(CatalogBlock):
        _block_type_slug = "flowport-test-escaped"
        _code_example = "```python\ndef f() -> None:\n    pass\n```"

    # Prefect's server HTML-escapes code examples: the UI would show "-&gt; None".
    assert catalog_problems(Escaped, "flowport") == [
        "Escaped: the code example has <, > or &, which the UI shows escaped"
    ]
    assert catalog_problems(MissingName, "flowport") == [
        "MissingName: the code example imports NoSuchThing from flowport.blocks, which has none"
    ]


# -- prefect-aws / prefect-gcp / prefect-sqlalchemy blocks are refused ----------------------


def _stand_in(module: str, name: str) -> type:
    """A class that looks, by module and name, like a block of a Prefect integration."""
    return type(name, (), {"__module__": module, "secret": "s3cr3t-value"})


def test_foreign_block_refused_with_the_mapping_and_no_value() -> None:
    from flowport.blocks import MIGRATIONS, foreign_block_error, replaces

    replaces("prefect_aws.DemoCreds", {"assume_role_arn": "role_arn", "use_ssl": ""})(CatalogBlock)
    try:
        creds = _stand_in("prefect_aws.credentials", "DemoCreds")()
        error = foreign_block_error(creds, where="Demo(credentials=...)", expected="x.Y")
    finally:
        MIGRATIONS.pop("prefect_aws.DemoCreds")
    assert isinstance(error, ConfigError) and not isinstance(error, ValueError)
    message = str(error)
    assert "Demo(credentials=...) got a prefect-aws block (prefect_aws.DemoCreds)" in message
    assert "flowport's blocks do not take prefect-aws blocks" in message
    assert "Use tests.CatalogBlock, mapping assume_role_arn -> role_arn" in message
    assert "use_ssl -> (no equivalent)" in message
    assert "s3cr3t" not in message


def test_unmapped_foreign_block_names_what_is_expected_and_others_pass() -> None:
    from flowport.blocks import foreign_block_error, refuse_foreign

    conn = _stand_in("prefect_sqlalchemy.database", "Unknown")()
    error = foreign_block_error(conn, where="fetch_all(database=...)", expected="a SqlDatabase")
    assert error is not None and "prefect-sqlalchemy" in str(error)
    assert "Use a SqlDatabase" in str(error)
    refuse_foreign(object(), where="x", expected="y")  # not foreign: no error
    refuse_foreign(_stand_in("prefect_awsome", "Thing")(), where="x", expected="y")


def test_flowport_task_refuses_a_foreign_block_argument() -> None:
    calls: list[object] = []

    class Touch(RetryingTask):
        def run(self, target: DemoBlock, n: int = 1) -> int:
            calls.append(target)
            return n

        def is_transient(self, exc: BaseException) -> bool:
            return False

    touch = Touch()
    foreign = _stand_in("prefect_gcp.cloud_storage", "GcsThing")()
    with pytest.raises(ConfigError) as caught:
        touch.fn(foreign)
    assert "touch(target=...) got a prefect-gcp block (prefect_gcp.GcsThing)" in str(caught.value)
    assert "Use flowport's DemoBlock." in str(caught.value)
    assert calls == []
    assert touch.fn(object(), n=2) == 2  # anything else still reaches run()
