"""Plugin discovery: connectors by entry point, behaviour plugins through pluggy.

Connectors declare, under ``[project.entry-points."flowport.connectors"]``,
``s3 = "flowport_s3.plugin:connector"``; our own connectors register exactly the way a third
party's would. Discovery reads entry point metadata only; a connector's module is imported
when it is loaded, and a broken one is reported with an install hint instead of breaking
everything else.

Behaviour plugins implement :mod:`flowport.hookspecs`; entry point group ``flowport.plugins``
autoloads them unless ``FLOWPORT_DISABLE_PLUGIN_AUTOLOAD`` is set.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from flowport import hookspecs
from flowport.errors import ConfigError

CONNECTOR_GROUP = "flowport.connectors"
PLUGIN_GROUP = "flowport.plugins"
AUTOLOAD_OFF_ENV = "FLOWPORT_DISABLE_PLUGIN_AUTOLOAD"

_log = logging.getLogger("flowport.plugins")
# Filled once, when the process-wide plugin manager autoloads: entry point name -> reason / dist.
_broken: dict[str, str] = {}
_sources: dict[str, str] = {}


@dataclass(frozen=True)
class Connector:
    """What a connector package exports at its entry point."""

    name: str
    distribution: str
    summary: str
    tasks: Mapping[str, Any] = field(default_factory=dict)
    blocks: Sequence[type[Any]] = ()
    check: Callable[[Any], str] | None = None
    """Side-effect-free connectivity check of a loaded block; returns what it verified."""
    check_block: type[Any] | None = None
    """The block type ``flowport check <name> --block NAME`` loads and passes to ``check``."""

    @property
    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.distribution)
        except PackageNotFoundError:
            return "unknown"


@dataclass
class ConnectorEntry:
    """One discovered connector, loaded on demand; ``error`` tells why loading failed."""

    name: str
    distribution: str
    entry_point: EntryPoint
    connector: Connector | None = None
    error: str | None = None

    def load(self) -> Connector:
        """Import the connector; raise :class:`ConfigError` with an install hint if broken."""
        if self.connector is None and self.error is None:
            try:
                obj = self.entry_point.load()
                if not isinstance(obj, Connector):
                    raise TypeError(f"{self.entry_point.value} is not a flowport Connector")
                self.connector = obj
            except Exception as exc:  # any import failure is reported, never propagated raw
                self.error = (
                    f"connector '{self.name}' from {self.distribution} failed to load "
                    f"({type(exc).__name__}: {exc}); try: pip install --force-reinstall "
                    f"'{self.distribution}'"
                )
        if self.connector is None:
            raise ConfigError(self.error or "unreachable", system="flowport", target=self.name)
        return self.connector

    @property
    def status(self) -> str:
        if self.connector is None and self.error is None:
            with contextlib.suppress(ConfigError):
                self.load()
        return "ok" if self.error is None else f"broken: {self.error}"


def discover_connectors() -> dict[str, ConnectorEntry]:
    """Every connector declared by an installed distribution, by name (nothing imported yet).

    Two distributions claiming one name is a :class:`ConfigError` naming both.
    """
    found: dict[str, ConnectorEntry] = {}
    for ep in entry_points(group=CONNECTOR_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        if ep.name in found:
            if found[ep.name].distribution == dist:
                continue  # the same distribution seen twice on sys.path
            raise ConfigError(
                f"two connectors claim the name '{ep.name}': {found[ep.name].distribution} "
                f"and {dist}; uninstall one of them",
                system="flowport",
                target=ep.name,
            )
        found[ep.name] = ConnectorEntry(ep.name, dist, ep)
    return found


def get_connector(name: str) -> Connector:
    """Load the connector called ``name``, with a clear error if it is absent or broken."""
    entries = discover_connectors()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ConfigError(
            f"no flowport connector named '{name}' is installed (installed: {known}); "
            f"try: pip install flowport-{name}",
            system="flowport",
            target=name,
        )
    return entries[name].load()


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use with autoloaded plugins.

    A behaviour plugin that fails to import is reported by :func:`broken_plugins` and in
    ``flowport plugins list``, never raised into the tasks that merely fire hooks.
    """
    pm = pluggy.PluginManager("flowport")
    pm.add_hookspecs(hookspecs)
    if not os.environ.get(AUTOLOAD_OFF_ENV):
        for ep in entry_points(group=PLUGIN_GROUP):
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            try:
                pm.register(ep.load(), name=ep.name)
                _sources[ep.name] = dist
            except Exception as exc:  # a broken plugin must not break every task
                _broken[ep.name] = (
                    f"plugin '{ep.name}' from {dist} failed to load ({type(exc).__name__}: "
                    f"{exc}); try: pip install --force-reinstall '{dist}'"
                )
                _log.warning("flowport: %s", _broken[ep.name])
    return pm


def broken_plugins() -> dict[str, str]:
    """Autoloaded behaviour plugins that failed to load, by entry point name, with the reason."""
    plugin_manager()
    return dict(_broken)


def loaded_plugins() -> dict[str, str]:
    """Registered behaviour plugins by name, with the distribution (or 'runtime') they came from."""
    return {
        name: _sources.get(name, "runtime")
        for name, plugin in plugin_manager().list_name_plugin()
        if plugin is not None
    }


def hook() -> Any:
    """The hook relay: ``hook().flowport_task_started(...)``."""
    return plugin_manager().hook


def register(plugin: object, name: str | None = None) -> None:
    """Add a behaviour plugin at run time (an object or module with hookimpls)."""
    plugin_manager().register(plugin, name=name)


def unregister(plugin: object) -> None:
    """Remove a plugin added by :func:`register` or autoloading."""
    plugin_manager().unregister(plugin)
