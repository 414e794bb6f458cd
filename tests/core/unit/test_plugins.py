"""Plugin discovery through a real installed distribution (flowport-testplugin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowport.errors import ConfigError, TransientError
from flowport.hookspecs import hookimpl
from flowport.plugins import (
    discover_connectors,
    get_connector,
    plugin_manager,
    register,
    unregister,
)
from flowport.retry import RetryPolicy


def test_connector_discovered_through_entry_point() -> None:
    entries = discover_connectors()
    assert "demo" in entries
    demo = get_connector("demo")
    assert demo.name == "demo"
    assert demo.version == "1.2.3"
    assert "noop" in demo.tasks


def test_broken_connector_reported_with_install_hint_not_raised() -> None:
    entries = discover_connectors()  # discovery itself does not fail
    broken = entries["broken"]
    assert broken.status.startswith("broken:")
    assert "flowport_dependency_that_is_not_installed" in broken.status
    assert "pip install" in broken.status
    with pytest.raises(ConfigError, match="failed to load"):
        get_connector("broken")
    assert get_connector("demo").name == "demo"  # others still load


def test_unknown_connector_names_installed_ones() -> None:
    with pytest.raises(ConfigError, match="pip install flowport-nosuch"):
        get_connector("nosuch")


def test_duplicate_connector_names_refused() -> None:
    dup = os.environ.get("FLOWPORT_TEST_DUP_PLUGIN_PATH")
    assert dup, "nox installs flowport-testplugin-dup into a target dir and sets this variable"
    code = "from flowport.plugins import discover_connectors; discover_connectors()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([dup, *sys.path])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "two connectors claim the name 'demo'" in proc.stderr
    assert "flowport-testplugin-dup" in proc.stderr


def test_autoloaded_behaviour_plugin_and_switch_off() -> None:
    import flowport_testplugin

    assert plugin_manager().is_registered(flowport_testplugin.recorder)
    before = len(flowport_testplugin.recorder.retries)
    calls = iter([TransientError("x")])

    def unit() -> str:
        for exc in calls:
            raise exc
        return "done"

    RetryPolicy(initial_delay=0, max_delay=0).bind(lambda e: False, name="probe")(unit)
    assert flowport_testplugin.recorder.retries[before:] == [("probe", 1)]

    code = (
        "import flowport_testplugin; from flowport.plugins import plugin_manager; "
        "print(plugin_manager().is_registered(flowport_testplugin.recorder))"
    )
    env = {**os.environ, "FLOWPORT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_runtime_register_adjusts_policy_and_unregister() -> None:
    class Tighten:
        @hookimpl
        def flowport_retry_policy(self, task_name: str, policy: RetryPolicy) -> RetryPolicy:
            return policy.replace(attempts=1)

    from tests.core.sample_tasks import FlakyFetch

    plugin = Tighten()
    register(plugin)
    try:
        with pytest.raises(ConnectionResetError):
            FlakyFetch(retry_policy=RetryPolicy(initial_delay=0, max_delay=0)).fn(
                "reg-1", failures=1
            )
    finally:
        unregister(plugin)
    assert (
        FlakyFetch(retry_policy=RetryPolicy(initial_delay=0, max_delay=0)).fn("reg-2", failures=1)
        == 2
    )


def test_cli_plugins_list_and_check(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowport.cli", "plugins", "list"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "demo" in out.stdout and "1.2.3" in out.stdout
    assert "broken:" in out.stdout and "pip install" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "flowport.cli", "check", "nosuch", "--block", "x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "no flowport connector named 'nosuch'" in bad.stderr


def test_broken_behaviour_plugin_is_isolated_and_listed() -> None:
    from flowport.plugins import broken_plugins
    from tests.core.sample_tasks import Add

    assert Add().fn(1) == 2  # firing hooks does not import-fail every task
    reason = broken_plugins()["broken_hooks"]
    assert "flowport_testplugin.no_such_module" in reason or "no_such_module" in reason
    assert "pip install --force-reinstall 'flowport-testplugin'" in reason
    out = subprocess.run(
        [sys.executable, "-m", "flowport.cli", "plugins", "list"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "recorder (flowport-testplugin): ok" in out.stdout
    assert "broken: plugin 'broken_hooks'" in " ".join(out.stdout.split())
    assert max(len(line) for line in out.stdout.splitlines()) <= 100


def test_cli_version() -> None:
    from importlib.metadata import version

    out = subprocess.run(
        [sys.executable, "-m", "flowport.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"flowport {version('flowport')}"
