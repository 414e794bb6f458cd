"""LazyClients: one client per process, never pickled, secrets hidden in block dumps."""

from __future__ import annotations

import pickle

import cloudpickle
from prefect.blocks.core import Block
from pydantic import SecretStr

from flowport.blocks import LazyClients


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
