"""The README's example of a user's flow test, run as a user would: its own pytest session in
a temp dir with nothing but the plugin (its services, its Prefect test server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowport_testing.services.base import CACHE_DIR

README = Path(__file__).resolve().parents[3] / "plugins" / "testing" / "README.md"


def _example(name: str) -> str:
    """The python block right after ``<!-- example: <name> ... -->`` in the README."""
    found = re.search(
        rf"<!-- example: {name}\b[^>]*-->\n```python\n(.*?)```", README.read_text(), re.S
    )
    assert found, f"no example {name!r} in {README}"
    return found.group(1)


def test_the_users_flow_test_in_the_readme_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytester points HOME at its temp dir: keep the services' cache (else a cold install).
    monkeypatch.setenv("FLOWPORT_CACHE_DIR", str(CACHE_DIR))
    code = _example("user-flow-test")
    assert "def test_export_users(postgres_db, s3_server, s3_bucket, prefect_server)" in code
    pytester.makepyfile(test_export_flow=code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=600)
    result.assert_outcomes(passed=1)
