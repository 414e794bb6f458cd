"""The ``flowport`` command: ``plugins list`` and ``check <connector> --block NAME``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowport.errors import FlowportError
from flowport.plugins import discover_connectors, get_connector
from flowport.secrets import redact


def _plugins_list() -> int:
    entries = discover_connectors()
    if not entries:
        print("no flowport connectors installed (try: pip install flowport-s3)")
        return 0
    rows = [("NAME", "VERSION", "STATUS", "TASKS", "BLOCKS")]
    for name, entry in sorted(entries.items()):
        status = entry.status
        if entry.connector is not None:
            c = entry.connector
            rows.append(
                (
                    name,
                    c.version,
                    status,
                    ", ".join(c.tasks),
                    ", ".join(b.__name__ for b in c.blocks),
                )
            )
        else:
            rows.append((name, "?", status, "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]))
    return 0


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowport", description="Flowport connectors for Prefect")
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
