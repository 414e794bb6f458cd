"""Lineage as Prefect assets: URI keys (valid, secret-free, bounded), and the events a real
Prefect server stores for flowport tasks that declare what they read and wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from prefect import flow
from prefect.assets import Asset
from prefect.context import AssetContext
from prefect.types.names import MAX_ASSET_KEY_LENGTH, RESTRICTED_ASSET_CHARACTERS

from flowport import RetryingTask
from flowport.errors import InvalidInput
from flowport.lineage import (
    Lineage,
    add_to_context,
    asset_key,
    collapse,
    file_uri,
    kafka_uri,
    sql_uri,
    store_uri,
)
from flowport.store import LocalStore
from flowport.transfer import Extract, StoreSink, StoreSource, TransferResult
from flowport.transfer_tasks import copy_between, run_transfer

SECRET = "s3cr3t-Pa55"


def asset_events(key: str, *, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
    """Asset events Prefect's server stored about resource ``key``, oldest first, once at
    least ``count`` have landed (events reach the server asynchronously)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            response = client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "resource": {"id": [key]},
                        "event": {"prefix": ["prefect.asset."]},
                        "order": "ASC",
                    },
                    "limit": 50,
                },
            )
            events: list[dict[str, Any]] = response.json()["events"]
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.2)


def related_assets(event: dict[str, Any]) -> set[str]:
    return {
        r["prefect.resource.id"]
        for r in event["related"]
        if r.get("prefect.resource.role") == "asset"
    }


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("s3://bucket/a/b.parquet", "s3://bucket/a/b.parquet"),
        ("gs://bucket/k.csv", "gs://bucket/k.csv"),
        ("postgresql+psycopg://db:5432/app/public.t", "postgresql://db:5432/app/public.t"),
        ("MySQL+PyMySQL://db:3306/app/t", "mysql://db:3306/app/t"),
        ("kafka://k1:9092,k2:9092/events", "kafka://k1:9092,k2:9092/events"),
        ("file:///tmp/a%C3%A9.txt", "file:///tmp/aé.txt"),
    ],
)
def test_uris_become_valid_prefect_asset_keys(uri: str, key: str) -> None:
    assert asset_key(uri) == key
    assert Asset(key=asset_key(uri)).key == key


@pytest.mark.parametrize(
    "uri",
    [
        f"postgresql+psycopg://alice:{SECRET}@db:5432/app/public.t",
        f"mysql://alice:{SECRET}@db/app/t",
        f"kafka://alice:{SECRET}@k1:9092/events",
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/key",
    ],
)
def test_keys_never_carry_a_user_or_password(uri: str) -> None:
    key = asset_key(uri)
    assert SECRET not in key and "alice" not in key and "AKIA" not in key and "@" not in key
    Asset(key=key)


def test_restricted_characters_are_replaced_and_the_key_stays_unique() -> None:
    odd = asset_key("s3://bucket/my report #1 (50%).csv")
    plain = asset_key("s3://bucket/my_report__1_(50_).csv")
    assert not set(RESTRICTED_ASSET_CHARACTERS) & set(odd)
    assert odd.startswith("s3://bucket/my_report__1_(50_).csv~") and odd != plain
    assert odd == asset_key("s3://bucket/my report #1 (50%).csv")  # deterministic
    Asset(key=odd)


def test_long_keys_keep_start_and_end_within_prefects_limit() -> None:
    middle = "/".join(f"part{i:04d}" for i in range(300))
    one = asset_key(f"s3://bucket/{middle}/a/orders.parquet")
    other = asset_key(f"s3://bucket/{middle.replace('part0150', 'PART0150')}/a/orders.parquet")
    assert len(one) <= MAX_ASSET_KEY_LENGTH and len(other) <= MAX_ASSET_KEY_LENGTH
    assert one.startswith("s3://bucket/part0000/") and one.endswith("/a/orders.parquet")
    assert one != other
    Asset(key=one)
    assert asset_key("s3://b/" + "k" * 400) == "s3://b/" + "k" * 400  # short enough: unchanged


def test_non_uris_are_refused_without_echoing_secrets() -> None:
    with pytest.raises(ValueError, match="not a URI") as info:
        asset_key(f"alice:{SECRET}@db/app")
    assert SECRET not in str(info.value)


def test_builders() -> None:
    assert sql_uri("postgresql+psycopg", "db", 5432, "app", "orders") == (
        "postgresql://db:5432/app/public.orders"
    )
    assert sql_uri("postgresql", "db", None, "app", "t", "sales") == "postgresql://db/app/sales.t"
    assert sql_uri("mysql", "db", 3306, "app", "t") == "mysql://db:3306/app/t"
    assert sql_uri("mariadb", "db", 3306, "app", "t", "other") == "mariadb://db:3306/other/t"
    assert sql_uri("sqlite", None, None, "/data/x.db", "t") == "sqlite:///data/x.db/t"
    assert sql_uri("sqlite", None, None, None, "t") == "sqlite:///:memory:/t"
    assert kafka_uri("k1:9092, k2:9092", "events") == "kafka://k1:9092,k2:9092/events"
    assert file_uri("/tmp/../tmp/x.csv") == "file:///tmp/x.csv"


def test_store_uris(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, prefix="lake")
    assert store_uri(store, "a/b.csv") == f"file://{tmp_path.resolve()}/lake/a/b.csv"
    assert store_uri(store) == f"file://{tmp_path.resolve()}/lake"


def test_many_objects_collapse_into_their_common_prefix() -> None:
    assert collapse(["s3://b/p/x", "s3://b/p/x", "s3://b/p/y"]) == ["s3://b/p/x", "s3://b/p/y"]
    assert collapse([f"s3://b/p/d{i % 3}/{i}" for i in range(60)]) == ["s3://b/p"]
    assert collapse([f"s3://b{i % 2}/{i}" for i in range(60)]) == ["s3://b0", "s3://b1"]


def test_metadata_in_the_asset_context_is_redacted() -> None:
    ctx = AssetContext()
    add_to_context(
        ctx,
        Lineage(
            reads=[f"postgresql://alice:{SECRET}@db/app/public.t"],
            writes=["s3://bucket/k.csv"],
            metadata={
                "rows": 3,
                "source": f"postgresql://alice:{SECRET}@db/app",
                "note": f"password={SECRET}",
                "offsets": {"events/0": [0, 9]},
            },
        ),
    )
    assert {a.key for a in ctx.downstream_assets} == {"s3://bucket/k.csv"}
    assert {a.key for a in ctx.direct_asset_dependencies} == {"postgresql://db/app/public.t"}
    assert ctx.materialized_by == "flowport"
    payload = ctx.materialization_metadata["s3://bucket/k.csv"]
    assert SECRET not in json.dumps(payload)
    assert payload["rows"] == 3 and payload["offsets"] == {"events/0": [0, 9]}


# -- events on a real Prefect server ---------------------------------------------------------


class Echo(RetryingTask):
    """A task without lineage: it must report no assets."""

    def run(self, x: int) -> int:
        return x

    def is_transient(self, exc: BaseException) -> bool:
        return False


echo = Echo()


def _lake(tmp_path: Path) -> tuple[LocalStore, LocalStore]:
    source = LocalStore(tmp_path / "src")
    batch = pa.record_batch({"id": list(range(10)), "v": [f"r{i}" for i in range(10)]})
    StoreSink(source, "in").load(Extract([batch]), "seed")
    return source, LocalStore(tmp_path / "dst")


@pytest.mark.usefixtures("prefect_server")
def test_run_transfer_materializes_the_sink_with_the_source_upstream(tmp_path: Path) -> None:
    source, target = _lake(tmp_path)

    @flow
    def lake() -> TransferResult:
        echo(1)  # no lineage: reports nothing
        return run_transfer(StoreSource(source, "in"), StoreSink(target, "out"), "t")

    result = lake()
    written, read = store_uri(target, "out"), store_uri(source, "in")
    (event,) = asset_events(asset_key(written))
    assert event["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(event) == {read}
    roles = {(r["prefect.resource.id"], r["prefect.resource.role"]) for r in event["related"]}
    assert ("flowport", "asset-materialized-by") in roles
    assert event["payload"]["rows"] == 10 == result.rows
    assert event["payload"]["bytes"] == result.bytes > 0 and event["payload"]["files"] == 1
    (referenced,) = asset_events(asset_key(read))
    assert referenced["event"] == "prefect.asset.referenced"
    # The event names the task run that wrote it: run_transfer's, not echo's.
    runs = [r for r in event["related"] if r["prefect.resource.id"].startswith("prefect.task-run.")]
    assert [r["prefect.resource.name"].split("-")[0] for r in runs] == ["run_transfer"]


@pytest.mark.usefixtures("prefect_server")
def test_a_failed_transfer_reports_a_failed_materialization(tmp_path: Path) -> None:
    source, target = _lake(tmp_path)

    @flow
    def broken() -> None:
        run_transfer(StoreSource(source, "in", format="avro"), StoreSink(target, "bad"), "t")

    with pytest.raises(InvalidInput):
        broken()
    (event,) = asset_events(store_uri(target, "bad"))
    assert event["event"] == "prefect.asset.materialization.failed"
    assert related_assets(event) == {store_uri(source, "in")}


@pytest.mark.usefixtures("prefect_server")
def test_copy_between_materializes_each_copy(tmp_path: Path) -> None:
    source, target = _lake(tmp_path)
    keys = [o.key for o in source.list("in") if "_flowport_state" not in o.key]

    @flow
    def copy() -> None:
        copy_between(source, target, keys=keys)

    copy()
    (event,) = asset_events(store_uri(target, keys[0]))
    assert event["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(event) == {store_uri(source, keys[0])}
    assert event["payload"]["objects"] == 1


class BrokenLineage(Echo):
    """A task whose lineage declaration has a bug."""

    def lineage(self, arguments: dict[str, Any], result: Any) -> Lineage:
        raise KeyError("no such argument")


@pytest.mark.usefixtures("prefect_server")
def test_a_broken_lineage_declaration_never_fails_the_task() -> None:
    @flow
    def moved() -> int:
        return BrokenLineage()(7)

    assert moved() == 7
