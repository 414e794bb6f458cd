"""The installed plugin: entry points, fixtures, Prefect isolation, the contract re-export and
the CLI, each seen from a pytest run in a temp dir (no services are started here)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import flowport.testing
import flowport_testing

FIXTURES = [
    "postgres",
    "postgres_db",
    "mariadb",
    "kafka",
    "s3_server",
    "s3_bucket",
    "gcs_server",
    "toxiproxy",
    "dask_cluster",
    "prefect_server",
]


def test_entry_points_name_the_plugin_and_the_cli() -> None:
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in plugins if ep.name == "flowport"] == ["flowport_testing.plugin"]
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert [ep.value for ep in scripts if ep.name == "flowport-services"] == [
        "flowport_testing.__main__:main"
    ]


def test_installing_is_enough_for_the_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")
    assert result.ret == 0
    listed = {line.split()[0] for line in result.outlines if line and not line[0].isspace()}
    assert set(FIXTURES) <= listed
    off = pytester.runpytest_subprocess("--fixtures", "-p", "no:flowport")
    assert not {line.split()[0] for line in off.outlines if line[:1].isalpha()} & set(FIXTURES)


def _prefect_env_test(pytester: pytest.Pytester, record: Path) -> None:
    pytester.makepyfile(
        test_env=f"""
        import os, pathlib

        def test_env():
            home = os.environ.get("PREFECT_HOME", "")
            pathlib.Path({str(record)!r}).write_text(
                home + "\\n" + os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "")
            )
            if home:
                assert os.path.isdir(home)
        """
    )


def test_a_run_gets_its_own_prefect_home_removed_at_exit(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    record = tmp_path / "env.txt"
    _prefect_env_test(pytester, record)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    home, analytics = record.read_text().splitlines()
    assert Path(home).name.startswith("flowport-prefect-")
    assert analytics == "false"
    assert not Path(home).exists()


def test_a_prefect_home_you_set_is_kept(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = tmp_path / "my-prefect-home"
    mine.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(mine))
    record = tmp_path / "env.txt"
    _prefect_env_test(pytester, record)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert record.read_text().splitlines() == [str(mine), "false"]
    assert mine.is_dir()


def test_isolation_can_be_switched_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    pytester.makeini("[pytest]\nflowport_isolate_prefect = false\n")
    record = tmp_path / "env.txt"
    _prefect_env_test(pytester, record)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert record.read_text().splitlines() == [""]


def test_object_store_contract_is_re_exported_not_copied() -> None:
    assert flowport_testing.ObjectStoreContract is flowport.testing.ObjectStoreContract
    assert "ObjectStoreContract" in flowport_testing.__all__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = flowport_testing.nothing  # type: ignore[attr-defined]


def test_a_third_party_store_runs_the_contract(pytester: pytest.Pytester) -> None:
    """A store author's class passes with a sound store and fails, with the values compared,
    when the store returns other bytes than it was given."""
    pytester.makepyfile(
        test_mystore="""
        import pytest
        from flowport import LocalStore
        from flowport_testing import ObjectStoreContract


        class Truncating(LocalStore):
            def get_bytes(self, key):
                return super().get_bytes(key)[:-1]


        class TestGood(ObjectStoreContract):
            @pytest.fixture
            def store(self, tmp_path):
                return LocalStore(tmp_path / "root")


        class TestBroken(ObjectStoreContract):
            @pytest.fixture
            def store(self, tmp_path):
                return Truncating(tmp_path / "root")
        """
    )
    result = pytester.runpytest_subprocess("-k", "bytes_round_trip")
    result.assert_outcomes(passed=1, failed=1)
    # Assertions rewritten: the values compared are shown, not a bare AssertionError.
    result.stdout.fnmatch_lines(
        ["*TestBroken.test_bytes_round_trip*", "E * assert b'hello flowpor' == b'hello flowport'"]
    )


def test_cli_status_and_unknown_service() -> None:
    status = subprocess.run(
        [sys.executable, "-m", "flowport_testing", "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].split() == [
        "name",
        "kind",
        "version",
        "pid",
        "port",
        "healthy",
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "flowport_testing", "up", "nosuch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "unknown service(s) ['nosuch']" in bad.stderr


def test_the_harness_needs_neither_prefect_nor_flowport() -> None:
    """CI provisions the services before anything else is installed."""
    code = (
        "import sys; sys.modules['prefect'] = sys.modules['flowport'] = None\n"
        "import flowport_testing, flowport_testing.__main__\n"
        "print(*sorted(flowport_testing.SERVICES))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["dask", "gcs", "kafka", "mariadb", "postgres", "s3", "toxiproxy"]
