"""mkdocs hook: pages that say ``<!-- flowport:error-table -->`` get the error reference
generated from the code (every error class, what it means, whether it is retried), and
``<!-- flowport:retry-rules -->`` each connector's retry rules (its errors module docstring),
so the page cannot drift from what the code does. tests/docs/test_error_reference.py checks
the same functions."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE_MARK = "<!-- flowport:error-table -->"
RULES_MARK = "<!-- flowport:retry-rules -->"
MIGRATION_MARK = "<!-- flowport:block-migrations -->"


def error_modules() -> list[str]:
    """``flowport.errors`` and every connector's ``errors`` module found in the repository."""
    names = ["flowport.errors"]
    for kind in ("connectors", "plugins"):
        for path in sorted((ROOT / kind).glob("*/src/*/errors.py")):
            if not path.parts[-4].startswith("_"):  # not connectors/_template
                names.append(f"{path.parent.name}.errors")
    return names


def error_classes() -> list[tuple[str, type[BaseException]]]:
    """(module, class) for every public exception class defined in an errors module."""
    from flowport.errors import FlowportError

    found: list[tuple[str, type[BaseException]]] = []
    for name in error_modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, FlowportError)
                and obj.__module__ == name
                and not attr.startswith("_")
            ):
                found.append((name, obj))
    return found


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")


def error_table() -> str:
    """The markdown table: class (module, base), whether it is retried, what it means."""
    rows = ["| error | retried | what it means |", "|---|---|---|"]
    for module, cls in error_classes():
        base = cls.__mro__[1].__name__
        retried = (
            "**yes**, with backoff, until the policy's attempts or deadline"
            if getattr(cls, "transient", False)
            else "no: raised at once"
        )
        where = f"<br><small>`{module}`, a `{base}`</small>"
        rows.append(f"| `{cls.__name__}`{where} | {retried} | {_summary(cls)} |")
    return "\n".join(rows)


def retry_rules() -> str:
    """One section per connector: the docstring of its errors module, which names what is
    transient and what is permanent."""
    parts = []
    for name in error_modules()[1:]:
        doc = inspect.getdoc(importlib.import_module(name)) or ""
        package = name.split(".")[0]
        parts.append(f"### `{package}`\n\n{doc}\n")
    return "\n".join(parts)


def block_migrations() -> str:
    """One table per prefect-aws / prefect-gcp / prefect-sqlalchemy block: which flowport block
    replaces it and how its fields map, from the ``replaces`` declarations on the blocks (the
    same mapping the refusal message prints)."""
    from flowport import blocks

    registry = getattr(blocks, "MIGRATIONS", None)
    if registry is None:
        return "The field mappings are in each connector's README."
    for path in sorted((ROOT / "connectors").glob("*/src/*/blocks.py")):
        if not path.parts[-4].startswith("_"):
            importlib.import_module(f"{path.parent.name}.blocks")
    parts = []
    for foreign, migration in sorted(registry.items()):
        rows = [f"### `{foreign}` -> `{migration.block}`\n", "| their field | flowport |"]
        rows.append("|---|---|")
        rows += [f"| `{k}` | {v or '(no equivalent)'} |" for k, v in migration.fields.items()]
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if TABLE_MARK in markdown:
        markdown = markdown.replace(TABLE_MARK, error_table())
    if RULES_MARK in markdown:
        markdown = markdown.replace(RULES_MARK, retry_rules())
    if MIGRATION_MARK in markdown:
        markdown = markdown.replace(MIGRATION_MARK, block_migrations())
    return markdown


def on_post_build(config: Any, **_: Any) -> None:
    """Publish the packaged block logos where the blocks' ``_logo_url`` points (``logos/``)."""
    from flowport.blocks import logo_svg

    logos = Path(config.site_dir) / "logos"
    logos.mkdir(parents=True, exist_ok=True)
    for package in ("flowport", "flowport_s3", "flowport_gcs", "flowport_sql", "flowport_kafka"):
        (logos / f"{package}.svg").write_text(logo_svg(package), encoding="utf-8")
