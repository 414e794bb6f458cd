"""The browser test: a real Prefect server, the harness's services (flowport-testing's pytest
plugin: postgres, s3_server), headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[Any]:
    """Keep each phase's report on the test item (the page fixture screenshots failures)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
