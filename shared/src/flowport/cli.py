"""The ``flowport`` command: ``--version``, ``plugins list``, ``check <connector> --block NAME``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from flowport.errors import FlowportError
from flowport.plugins import broken_plugins, discover_connectors, get_connector, loaded_plugins
from flowport.secrets import redact


def _plugins_list(width: int = 100) -> int:
    """Connectors, then behaviour plugins; long lists wrap so the output fits ``width`` columns."""
    entries = discover_connectors()
    if not entries:
        print("no flowport connectors installed (try: pip install flowport-s3)")
    for name, entry in sorted(entries.items()):
        status = entry.status
        c = entry.connector
        print(f"{name} {c.version if c else '?'}: {'ok' if c else ''}".rstrip())
        if c is None:
            _wrapped(status, width)
            continue
        _wrapped(f"tasks: {', '.join(c.tasks)}", width)
        _wrapped(f"blocks: {', '.join(b.__name__ for b in c.blocks)}", width)
    loaded, broken = loaded_plugins(), broken_plugins()
    if loaded or broken:
        print("behaviour plugins:")
    for name, dist in sorted(loaded.items()):
        _wrapped(f"{name} ({dist}): ok", width)
    for reason in broken.values():
        _wrapped(f"broken: {reason}", width)
    return 0


def _wrapped(text: str, width: int) -> None:
    print(textwrap.fill(text, width, initial_indent="  ", subsequent_indent="    "))


def _check(name: str, block_name: str) -> int:
    try:
        connector = get_connector(name)
        if connector.check is None or connector.check_block is None:
            print(f"connector '{name}' has no connectivity check", file=sys.stderr)
            return 1
        block = connector.check_block.load(block_name)
        message = connector.check(block)
    except FlowportError as exc:
        print(f"FAILED: {redact(str(exc))}", file=sys.stderr)
        return 1
    except ValueError as exc:  # Prefect raises ValueError for an unknown block name
        print(f"FAILED: {redact(str(exc))}", file=sys.stderr)
        return 1
    print(f"OK: {redact(message)}")
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("flowport")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowport", description="Flowport connectors for Prefect")
    parser.add_argument("--version", action="version", version=f"flowport {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="installed connectors")
    plugins.add_argument("action", choices=["list"])
    check = sub.add_parser("check", help="side-effect-free connectivity check of a saved block")
    check.add_argument("connector")
    check.add_argument("--block", required=True, help="name of the saved block to check")
    args = parser.parse_args(argv)
    if args.command == "plugins":
        return _plugins_list()
    return _check(args.connector, args.block)


if __name__ == "__main__":
    sys.exit(main())
