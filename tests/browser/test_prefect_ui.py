"""Prefect's own UI, in headless Chromium, shows what flowport put into a real Prefect server.

A flow with flowport tasks (PostgreSQL -> CSV on the S3 gateway, an upload) runs against a
``prefect server start`` of its own; then Debian's chromium (Playwright, system browser)
opens the flow run page, its artifacts tab, the event feed and the block catalog pages of
flowport's blocks. Screenshots go to ``tests/browser/output/`` (or ``FLOWPORT_BROWSER_OUTPUT``).

The UI loads block logos from their ``_logo_url`` (the documentation site); the test serves
those URLs from the SVG files the packages ship, so the check needs no network and proves
the packaged files are what the catalog shows.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flowport.blocks import DOCS_URL, logo_svg
from flowport_s3 import AwsCredentials, S3Bucket, S3Store, upload_bytes
from flowport_sql import SqlDatabase, bulk_insert, execute, export_query
from flowport_testing.services import chromium
from tests.browser.server import PrefectServer, prefect_server

CHROMIUM = os.environ.get("FLOWPORT_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(os.environ.get("FLOWPORT_BROWSER_OUTPUT", Path(__file__).parent / "output"))
#: The UI is a single-page app on a busy 2-core machine: give each page time to load.
PAGE_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Run:
    """What the flow left in the server: its run, the artifact keys, the assets it wrote."""

    flow_run_id: str
    flow_run_name: str
    artifact_keys: list[str]
    table: str
    csv_key: str
    asset_keys: list[str]


@pytest.fixture(scope="module")
def server() -> Iterator[PrefectServer]:
    with (
        prefect_server() as running,
        temporary_settings(updates={PREFECT_API_URL: running.api_url}),
    ):
        yield running


@flow(name="flowport-browser-check")
def orders_to_lake(db: SqlDatabase, bucket: S3Bucket, table: str) -> None:
    """PostgreSQL -> CSV on S3 through flowport tasks, plus a marker object."""
    execute(db, f"CREATE TABLE {table} (id bigint PRIMARY KEY, total numeric(10,2))")
    bulk_insert(db, table, [{"id": i, "total": i * 1.5} for i in range(1, 101)])
    export_query(db, f"SELECT id, total FROM {table} ORDER BY id", S3Store(bucket), f"{table}.csv")
    upload_bytes(bucket, b"done\n", f"{table}.done")


@pytest.fixture(scope="module")
def run(server: PrefectServer, postgres: Any, s3_server: Any) -> Run:
    name = f"browser-{uuid.uuid4().hex[:10]}"
    s3_server.client().create_bucket(Bucket=name)
    creds = AwsCredentials(
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
        endpoint_url=s3_server.endpoint_url,
        addressing_style="path",
    )
    bucket = S3Bucket(bucket_name=name, credentials=creds)
    db = SqlDatabase(url=postgres.sqlalchemy_url)
    # Saved blocks register flowport's block types: the catalog pages below show them.
    bucket.save(name)
    db.save(name)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    state = orders_to_lake(db, bucket, table, return_state=True)
    assert state.is_completed(), state
    db.dispose()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [str(flow_run.id)]}}},
        ).json()
    keys = sorted(a["key"] for a in artifacts if a.get("key"))
    assert any("export-query" in k for k in keys) and any("upload-bytes" in k for k in keys)
    s3_key = f"s3://{name}/{table}.csv"
    table_key = f"postgresql://{postgres.host}:{postgres.port}/{postgres.database}/public.{table}"
    return Run(str(flow_run.id), flow_run.name, keys, table, s3_key, [s3_key, table_key])


@pytest.fixture(scope="module")
def browser(run: Run) -> Iterator[Any]:
    """Chromium, started after the flow ran: Playwright's sync API runs an event loop, inside
    which Prefect's sync calls (``Block.save``) would turn into coroutines."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Installed on first use (apt), like every harness service, when .ci/run has not.
        executable = CHROMIUM if os.environ.get("FLOWPORT_CHROMIUM") else str(chromium.install())
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page whose requests for flowport's logo URLs get the packaged SVG files; a
    screenshot of it is kept when the test fails."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)

    def serve_logo(route: Any) -> None:
        package = route.request.url.rsplit("/", 1)[1].removesuffix(".svg")
        route.fulfill(status=200, content_type="image/svg+xml", body=logo_svg(package))

    context.route(f"{DOCS_URL}logos/*.svg", serve_logo)
    opened = context.new_page()
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        _screenshot(opened, f"FAILED-{request.node.name}")
    context.close()


def _screenshot(page: Any, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_flow_run_page_shows_the_flowport_tasks(page: Any, server: PrefectServer, run: Run) -> None:
    page.goto(f"{server.url}/runs/flow-run/{run.flow_run_id}")
    page.get_by_text(run.flow_run_name).first.wait_for()
    page.get_by_text("Completed").first.wait_for()
    page.get_by_text("Task Runs", exact=True).first.click()
    for task in ("execute", "bulk_insert", "export_query", "upload_bytes"):
        page.get_by_text(re.compile(rf"^{task}-")).first.wait_for()
    _screenshot(page, "flow-run")


def test_artifacts_tab_shows_flowport_artifacts(page: Any, server: PrefectServer, run: Run) -> None:
    page.goto(f"{server.url}/runs/flow-run/{run.flow_run_id}")
    page.get_by_text("Artifacts", exact=True).first.click()
    for key in run.artifact_keys:
        page.get_by_text(key).first.wait_for()
    _screenshot(page, "flow-run-artifacts")


def test_event_feed_shows_the_asset_events(page: Any, server: PrefectServer, run: Run) -> None:
    page.goto(f"{server.url}/events")
    page.get_by_text(re.compile("materialization", re.IGNORECASE)).first.wait_for()
    for key in run.asset_keys:
        page.get_by_text(key).first.wait_for()
    _screenshot(page, "event-feed")


def _logo_shown(page: Any, slug: str) -> None:
    """The block type's logo ``<img>`` points at its ``_logo_url`` and has decoded."""
    package = {"flowport-s3-bucket": "flowport_s3", "flowport-aws-credentials": "flowport_s3"}
    src = f"{DOCS_URL}logos/{package.get(slug, 'flowport_sql')}.svg"
    image = page.locator(f'img[src="{src}"]').first
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )


def test_block_catalog_shows_logo_description_and_code_example(
    page: Any, server: PrefectServer, run: Run
) -> None:
    page.goto(f"{server.url}/blocks/catalog/flowport-s3-bucket")
    page.get_by_text("Flowport S3 Bucket").first.wait_for()
    _logo_shown(page, "flowport-s3-bucket")
    page.get_by_text("pip install flowport-s3").first.wait_for()
    page.get_by_text('S3Bucket.load("raw-events")').first.wait_for()
    _screenshot(page, "catalog-s3-bucket")


def _field_label(page: Any, title: str) -> Any:
    """A form field's label: the title alone, or with " (Optional)" when it has a default."""
    return page.get_by_text(re.compile(rf"^{re.escape(title)}( \(Optional\))?$")).first


def test_block_forms_show_human_field_titles(page: Any, server: PrefectServer, run: Run) -> None:
    page.goto(f"{server.url}/blocks/catalog/flowport-aws-credentials/create")
    for title in ("AWS access key ID", "AWS secret access key", "S3 endpoint URL"):
        _field_label(page, title).wait_for()
    _field_label(page, "Verify TLS certificates").wait_for()
    assert page.get_by_text(re.compile("Aws Access Key Id")).count() == 0  # pydantic's title
    _logo_shown(page, "flowport-aws-credentials")
    _screenshot(page, "create-aws-credentials")
    page.goto(f"{server.url}/blocks/catalog/flowport-sql-database/create")
    for title in ("SQLAlchemy URL (without password)", "Dialect and driver", "Pool size"):
        _field_label(page, title).wait_for()
    _logo_shown(page, "flowport-sql-database")
    _screenshot(page, "create-sql-database")
