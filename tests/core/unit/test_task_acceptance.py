"""Acceptance findings on RetryingTask (issue 13): task keys, map over blocks and policies,
tags, payload parameters, signatures, retry give-up messages."""

from __future__ import annotations

import inspect
import logging

import pytest
from prefect import flow, task
from pydantic import SecretStr

from flowport import RetryPolicy
from tests.core.sample_tasks import Add, CountingList, FlakyFetch, Missing, SumRows

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_each_task_has_its_own_stable_task_key() -> None:
    keys = {Add().prefect_task.task_key, FlakyFetch().prefect_task.task_key}
    keys.add(Missing().prefect_task.task_key)
    assert len(keys) == 3
    key = Add().prefect_task.task_key
    assert key.startswith("add__tests_core_sample_tasks_Add-")
    renamed = Add().with_options(name="add_ten")
    assert renamed.prefect_task.task_key.startswith("add_ten__tests_core_sample_tasks_Add-")
    assert Add(name="plus").prefect_task.task_key.startswith("plus__tests_core_sample_tasks_Add-")
    # Prefect derives the key again in every copy it makes (with_options, task workers).
    assert Add().prefect_task.with_options(retries=1).task_key == key


def test_inspect_signature_of_the_task_itself() -> None:
    params = inspect.signature(Add(step=2)).parameters
    assert list(params) == ["x", "step", "retry_policy"]
    assert params["step"].default == 2


def test_map_passes_models_whole() -> None:
    """A pydantic model (blocks, RetryPolicy) iterates as (field, value) pairs; map must not."""

    fast = RetryPolicy(attempts=2, initial_delay=0)

    @flow
    def mapped() -> list[int]:
        futures = Add().map([1, 2, 3], step=1, retry_policy=fast)
        return [f.result() for f in futures]

    assert mapped() == [2, 3, 4]
    # Lengths that happen to match the model's field count used to map over its fields.
    n_fields = len(RetryPolicy.model_fields)

    @flow
    def same_length() -> list[int]:
        return [f.result() for f in Add().map(list(range(n_fields)), retry_policy=fast)]

    assert same_length() == [i + 1 for i in range(n_fields)]


def test_with_options_tags_add_to_the_connectors_own() -> None:
    tagged = Add().with_options(tags=["nightly"])
    assert set(tagged.prefect_task.tags) == {"flowport-test", "nightly"}
    assert set(Add().prefect_task.tags) == {"flowport-test"}


def test_payload_parameters_are_not_walked_by_prefect() -> None:
    rows = CountingList(range(1000))
    CountingList.iterations = 0

    @flow
    def load() -> tuple[str, int]:
        return SumRows()("direct", rows)

    assert load() == ("direct", sum(range(1000)))
    assert CountingList.iterations == 1  # sum() in run; Prefect never walked it

    @task
    def make_rows() -> list[int]:
        return [1, 2, 3]

    @flow
    def from_future() -> tuple[str, int]:
        return SumRows().submit("future", rows=make_rows.submit()).result()

    assert from_future() == ("future", 6)


def test_retry_give_up_is_said(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(attempts=3, initial_delay=0, max_delay=0)
    caplog.set_level(logging.INFO)
    with pytest.raises(ConnectionResetError) as info:
        FlakyFetch().fn("give-up-key", failures=10, retry_policy=policy)
    assert "flaky_fetch: gave up after 3 attempts" in caplog.text
    assert any("gave up after 3 attempts" in n for n in getattr(info.value, "__notes__", []))


def test_permanent_error_does_not_claim_attempts_were_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(Exception, match="not found"):
        Missing().fn("nothing")
    assert "gave up" not in caplog.text


def test_progress_logs_one_line_saying_what_moved(caplog: pytest.LogCaptureFixture) -> None:
    from flowport.progress import Progress

    caplog.set_level(logging.INFO, logger="flowport")
    with Progress("upload file:///tmp/x", total=3 * 1024 * 1024) as p:
        p.advance(3 * 1024 * 1024)
    lines = [r.getMessage() for r in caplog.records if r.name == "flowport"]
    assert len(lines) == 1
    assert lines[0].startswith("upload file:///tmp/x: 3.0 MiB in ")
    with pytest.raises(RuntimeError), Progress("download file:///tmp/y", total=10) as p:
        raise RuntimeError("broken")
    assert len([r for r in caplog.records if r.name == "flowport"]) == 1


def test_artifact_key_names_flow_and_target_without_secrets() -> None:
    from flowport.artifacts import artifact_key

    secret = SecretStr("hunter2")

    @flow(name="Nightly Export")
    def nightly() -> str:
        return artifact_key("upload_file", f"s3://user:{secret.get_secret_value()}@bucket")

    key = nightly()
    assert key.startswith("flowport-nightly-export-upload-file-s3-")
    assert "hunter2" not in key
    assert artifact_key("upload_file") == "flowport-upload-file"


def test_long_artifact_keys_keep_the_flow_task_and_the_target_end() -> None:
    from flowport.artifacts import artifact_key

    target = "sqlite:///" + "/very/long/path" * 12 + "/main.orders_2026"
    key = artifact_key("bulk_insert", target)
    assert len(key) <= 120
    assert key.startswith("flowport-bulk-insert-sqlite-")
    assert key.endswith("main-orders-2026")
    assert key != artifact_key("bulk_insert", target.replace("long", "lang"))
