"""The generated pages of the docs (docs/hooks.py) cover what the code has: every public error
class with whether it is retried, every connector's retry rules, every block migration."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

from flowport.errors import FlowportError

ROOT = Path(__file__).resolve().parents[2]


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowport_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()


def _all_subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_all_subclasses(sub)}
    return out


def _connector_packages() -> list[str]:
    return sorted(
        p.parent.name
        for kind in ("connectors", "plugins")
        for p in (ROOT / kind).glob("*/src/*/__init__.py")
        if not p.parts[-4].startswith("_")
    )


def test_the_table_has_one_row_per_public_error_class_with_its_retry_behaviour() -> None:
    for package in _connector_packages():
        importlib.import_module(package)  # every module that might define an error class
    public = {
        cls
        for cls in _all_subclasses(FlowportError) | {FlowportError}
        if not cls.__name__.startswith("_")
        and cls.__module__.split(".")[0] in {"flowport", *_connector_packages()}
    }
    listed = {cls for _, cls in HOOKS.error_classes()}
    assert public == listed, (
        f"public error classes outside an errors module: {public - listed}; "
        "define them in <package>/errors.py so the error reference lists them"
    )
    table = HOOKS.error_table()
    for cls in listed:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{cls.__name__}`<"))
        assert f"`{cls.__module__}`, a `{cls.__mro__[1].__name__}`" in row
        retried = row.split("|")[2]
        assert ("yes" in retried) == cls.transient, row
        assert row.split("|")[3].strip(), f"{cls.__name__} has no docstring"
    assert "| `TransientError`<" in table and "| `WaitTimeout`<" in table


def test_every_connector_states_its_retry_rules() -> None:
    rules = HOOKS.retry_rules()
    with_errors = [p for p in _connector_packages() if any(ROOT.glob(f"*/*/src/{p}/errors.py"))]
    assert {"flowport_s3", "flowport_sql", "flowport_gcs", "flowport_kafka"} <= set(with_errors)
    for package in with_errors:
        section = rules.split(f"### `{package}`", 1)
        assert len(section) == 2, f"{package} has no errors module docstring section"
        assert re.search(r"[Tt]ransient", section[1].split("### ", 1)[0]), package


def test_every_block_migration_is_on_the_migration_page() -> None:
    from flowport import blocks

    text = HOOKS.block_migrations()
    registry = getattr(blocks, "MIGRATIONS", {})
    for foreign, migration in registry.items():
        assert f"### `{foreign}` -> `{migration.block}`" in text
        for theirs in migration.fields:
            assert f"| `{theirs}` |" in text


def test_the_pages_carry_the_markers_the_hook_fills() -> None:
    docs = ROOT / "docs"
    assert HOOKS.TABLE_MARK in (docs / "errors.md").read_text()
    assert HOOKS.RULES_MARK in (docs / "errors.md").read_text()
    assert HOOKS.MIGRATION_MARK in (docs / "migration.md").read_text()
    page = HOOKS.on_page_markdown((docs / "errors.md").read_text())
    assert "<!-- flowport:" not in page and "| `NotFound`<" in page
