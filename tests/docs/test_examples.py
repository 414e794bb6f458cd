"""Every python code block in docs/**/*.md runs here, against the real services it names.

A block is preceded by an HTML comment that says what it needs:

    <!-- example: postgres s3 -->       run it, with these services set up (may be empty)
    <!-- illustration: why -->          shown only (kept few: MAX_ILLUSTRATIONS)

A python block without one of these fails the suite. Services: ``postgres``, ``mariadb``,
``s3``, ``gcs``, ``kafka``, ``dask``. Each is started by flowport-testing's fixtures, its
variables (the ones ``flowport-services env`` prints) are set, its state is reset (a fresh
``public`` schema, empty ``lake`` / ``archive`` buckets, no user topics) and the blocks the
docs load (``lake``, ``local-s3``, ``archive``, ``warehouse``, ``events``) are saved. Each
example runs as a script in a fresh working directory, in this process, on the session's
Prefect test server.
"""

from __future__ import annotations

import contextlib
import re
import runpy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MAX_ILLUSTRATIONS = 3
SERVICES = {"postgres", "mariadb", "s3", "gcs", "kafka", "dask"}

_BLOCK = re.compile(
    r"^(?:<!--\s*(?P<mark>[^>]*?)\s*-->\n)?```(?:python|py)[^\n]*\n(?P<code>.*?)^```\s*$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Example:
    path: Path
    line: int
    kind: str  # "example", "illustration" or "" (unmarked)
    services: tuple[str, ...]
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DOCS)}:{self.line}"


def collect() -> list[Example]:
    """Every python block of every page, in order, with its marker."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            mark = (m.group("mark") or "").strip()
            kind, _, rest = mark.partition(":")
            services = tuple(rest.split()) if kind.strip() == "example" else ()
            line = text.count("\n", 0, m.start("code"))
            found.append(Example(path, line, kind.strip(), services, m.group("code")))
    return found


EXAMPLES = collect()
RUNNABLE = [e for e in EXAMPLES if e.kind == "example"]


def test_every_python_block_is_marked_and_illustrations_are_few() -> None:
    unmarked = [e.id for e in EXAMPLES if e.kind not in ("example", "illustration")]
    assert not unmarked, f"python blocks without <!-- example: ... --> or illustration: {unmarked}"
    unknown = {s for e in RUNNABLE for s in e.services} - SERVICES
    assert not unknown, f"unknown services in markers: {unknown}"
    illustrations = [e.id for e in EXAMPLES if e.kind == "illustration"]
    assert len(illustrations) <= MAX_ILLUSTRATIONS, illustrations
    assert len(RUNNABLE) >= 10  # the collector found the pages' examples
    unchecked = [e.id for e in RUNNABLE if not re.search(r"^\s*assert ", e.code, re.M)]
    assert not unchecked, f"examples that check nothing (add an assert): {unchecked}"


_INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$', re.M)


def test_python_blocks_of_included_readmes_parse() -> None:
    """Connector pages include the READMEs (one source): their python blocks are API tours
    with fragments, so they are compiled, not run; the runnable example of each connector
    page sits above the include."""
    compiled = 0
    for page in sorted(DOCS.rglob("*.md")):
        for included in _INCLUDE.findall(page.read_text()):
            text = (ROOT / included).read_text()
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
                compile(m.group(1), f"{included}:{text.count(chr(10), 0, m.start())}", "exec")
                compiled += 1
    assert compiled >= 4


# -- per-service setup ------------------------------------------------------------------------


def _setup_postgres(pg: Any, mp: pytest.MonkeyPatch) -> None:
    import psycopg

    from flowport_sql import SqlDatabase

    for name, value in pg.env().items():
        mp.setenv(name, value)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    SqlDatabase(url=pg.sqlalchemy_url).save("warehouse", overwrite=True)


def _setup_mariadb(db: Any, mp: pytest.MonkeyPatch) -> None:
    for name, value in db.env().items():
        mp.setenv(name, value)


def _empty_s3_bucket(client: Any, name: str) -> None:
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    except client.exceptions.ClientError as exc:
        if "BucketAlready" not in str(exc):
            raise
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])


def _setup_s3(s3: Any, mp: pytest.MonkeyPatch) -> None:
    from flowport_s3 import AwsCredentials, S3Bucket

    for name, value in s3.env().items():
        mp.setenv(name, value)
    _empty_s3_bucket(s3.client(), "lake")
    creds = AwsCredentials(
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        endpoint_url=s3.endpoint_url,
        addressing_style="path",
    )
    creds.save("local-s3", overwrite=True)
    S3Bucket(bucket_name="lake", credentials=creds).save("lake", overwrite=True)


def _setup_gcs(gcs: Any, mp: pytest.MonkeyPatch) -> None:
    from google.api_core.exceptions import Conflict

    from flowport_gcs import GcpCredentials, GcsBucket

    for name, value in gcs.env().items():
        mp.setenv(name, value)
    client = gcs.client()
    with contextlib.suppress(Conflict):
        client.create_bucket("archive")
    for blob in list(client.list_blobs("archive")):
        blob.delete()
    creds = GcpCredentials(anonymous=True, endpoint=gcs.endpoint_url, project=gcs.project)
    GcsBucket(bucket="archive", credentials=creds).save("archive", overwrite=True)


def _setup_kafka(kafka: Any, mp: pytest.MonkeyPatch) -> None:
    from kafka.admin import KafkaAdminClient

    from flowport_kafka import KafkaConnection

    for name, value in kafka.env().items():
        mp.setenv(name, value)
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        topics = [t for t in admin.list_topics() if not t.startswith("_")]
        if topics:
            admin.delete_topics(topics)
            deadline = time.monotonic() + 60
            while set(topics) & set(admin.list_topics()) and time.monotonic() < deadline:
                time.sleep(0.2)  # a deleted topic takes its groups' committed offsets along
    finally:
        admin.close()
    KafkaConnection(bootstrap_servers=kafka.bootstrap_servers).save("events", overwrite=True)


def _setup_env(service: Any, mp: pytest.MonkeyPatch) -> None:
    for name, value in service.env().items():
        mp.setenv(name, value)


SETUP: dict[str, tuple[str, Callable[[Any, pytest.MonkeyPatch], None]]] = {
    "postgres": ("postgres", _setup_postgres),
    "mariadb": ("mariadb", _setup_mariadb),
    "s3": ("s3_server", _setup_s3),
    "gcs": ("gcs_server", _setup_gcs),
    "kafka": ("kafka", _setup_kafka),
    "dask": ("dask_cluster", _setup_env),
}


@pytest.mark.parametrize("example", RUNNABLE, ids=[e.id for e in RUNNABLE])
def test_example_runs(
    example: Example,
    request: pytest.FixtureRequest,
    prefect_server: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for service in example.services:
        fixture, setup = SETUP[service]
        setup(request.getfixturevalue(fixture), monkeypatch)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / f"{example.path.stem}_{example.line}.py"
    # Blank lines up to the block's line, so a traceback points at the line in the page.
    script.write_text("\n" * example.line + example.code)
    try:
        runpy.run_path(str(script), run_name="__main__")  # the example's own asserts check it
    finally:
        if "kafka" in example.services:
            _close_kafka_clients()


def _close_kafka_clients() -> None:
    """Close the clients the example's blocks built: their background threads would otherwise
    outlive the broker and log connection errors until the interpreter exits."""
    import gc

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    for obj in gc.get_objects():
        if isinstance(obj, KafkaProducer | KafkaConsumer | KafkaAdminClient):
            with contextlib.suppress(Exception):
                obj.close()
